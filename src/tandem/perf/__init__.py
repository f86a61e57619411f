"""Performance model: how long prefill, a decode step and a KV transfer take on an instance.

- ``specs``: ``ModelSpec`` / ``HardwareSpec`` and the built-in tables; ``instance``: model x
  hardware x tensor-parallel degree, memory and KV link arithmetic.
- ``base.CostModel``: the one interface everything downstream asks. Implementations:
  ``FittedCostModel`` (closed forms fitted to measurements), ``RooflineCostModel`` (specs and
  stated efficiencies), ``MeasuredCostModel`` (a user's measured tables), ``LinearCostModel``
  (hand-written coefficients).
- ``registry``: ``get_profile(name)``, ``list_profiles()``, ``load_measured(path)``.
- ``fit_report``: error of every measured profile on points held out of its fit.
"""

from tandem.perf.base import CostModel
from tandem.perf.fitted import FittedCostModel
from tandem.perf.linear import LinearCostModel
from tandem.perf.measured import MeasuredCostModel
from tandem.perf.ranges import OutOfMeasuredRangeWarning, TandemWarning
from tandem.perf.roofline import RooflineCostModel, RooflineEfficiency

__all__ = [
    "CostModel",
    "FittedCostModel",
    "LinearCostModel",
    "MeasuredCostModel",
    "OutOfMeasuredRangeWarning",
    "RooflineCostModel",
    "RooflineEfficiency",
    "TandemWarning",
]
