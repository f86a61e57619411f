"""Model runner on PyTorch / transformers (needs the ``[predict]`` extra).

Modules, one concept each:

- ``errors``     user-facing errors of the engine (no torch import)
- ``identity``   ``ModelIdentity``: which model a data file or checkpoint belongs to (no torch)
- ``loader``     load a causal LM from a local directory, a GGUF file or the embedded default
- ``sampling``   ``SamplingParams`` and the per-request sampler (temperature, top-p, seed)
- ``kv_cache``   the left-padded batched KV cache of the running batch
- ``sequence``   one request's state inside the runner; its exported snapshot for migration
- ``runner``     ``ModelRunner``: ``add_request`` / ``step`` / ``collect_finished``

This ``__init__`` imports nothing heavy, so ``import tandem.engine`` stays cheap; import the
submodules you need.
"""
