"""Performance model: how long prefill, a decode step and a KV transfer take on an instance."""

from tandem.perf.base import CostModel
from tandem.perf.linear import LinearCostModel

__all__ = ["CostModel", "LinearCostModel"]
