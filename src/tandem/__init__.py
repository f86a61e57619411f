"""Tandem: a toolkit and control plane for prefill/decode disaggregated LLM serving.

Package map (each package imports only the ones listed before it):

- ``errors``    user-facing error types (bad input, unknown names)
- ``workload``  requests, trace readers, synthetic arrivals and lengths, transforms
- ``metrics``   TTFT / TPOT / ITL / E2E, SLO attainment, goodput (vLLM's definitions)
- ``perf``      model and hardware specs, cost models (prefill, decode step, KV transfer)
- ``control``   pure control plane: instance views and dispatch / placement / rescheduling policies
- ``sim``       discrete-event simulator driving the control plane
- ``plan``      capacity planner
- ``engine``    model runner on PyTorch / transformers (``[predict]`` extra)
- ``predict``   remaining-length predictor (``[predict]`` extra)
- ``commands``  the typer sub-commands; ``cli`` assembles them
"""

__version__ = "0.1.0"
