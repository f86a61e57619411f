"""Real P/D serving (``tandem serve``): data plane B, the twin of ``tandem.sim``.

Modules, one concept each:

- ``messages``       every message between the front end and the workers (one file: the protocol)
- ``worker``         the step loop shared by both worker roles (inbox, poll, stats)
- ``prefill_worker`` prefill: batched prompt forward, first token, KV hand-off
- ``decode_worker``  decode: KV capacity, admission and preemption (``control.admission``), steps
- ``backends``       one worker-handle interface: in-process (``local``) or Ray actors (``ray``)
- ``controller``     views of the workers, the ``control`` policies, per-request streams
- ``protocol``       OpenAI request parsing, response and SSE shapes, error JSON
- ``api``            the FastAPI app (``/v1/completions``, ``/v1/chat/completions``, ...)
- ``metrics``        Prometheus series with vLLM V1 names under a ``tandem:`` prefix
- ``server``         builds everything from a ``ServeConfig`` and runs uvicorn

Needs the ``[serve]`` and ``[predict]`` extras; ``import tandem.serve`` itself is cheap.
"""
