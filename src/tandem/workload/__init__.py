"""Workloads: requests, trace readers, synthetic generators, transforms and embedded traces."""

from tandem.workload.registry import EMBEDDED, load_workload
from tandem.workload.request import Request, Workload, workload_from_arrays

__all__ = ["EMBEDDED", "Request", "Workload", "load_workload", "workload_from_arrays"]
