"""The predictor's cost as a share of one decode step of the runner, measured in one run.

Method: a ``ModelRunner`` of the checkpoint's model decodes ``batch_size`` requests together
(the data's first prompts, end-of-sequence ignored so the batch stays full) for
``decode_steps`` steps. After each timed decode step, the ARES head is timed on that step's
tapped states (the same [batch, d] tensor the serving loop would hand it), a few calls per
step, so that both timings see the same machine load. Reported: medians, their ratio in percent,
and the same ratio for the refresh schedule (each request refreshed every ``every_tokens``
tokens means about batch / every rows per step). Absolute times depend on the machine; only the
ratio is meant to travel.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from tandem.engine.identity import ModelIdentity, require_same_model
from tandem.engine.loader import load_model
from tandem.engine.runner import ModelRunner
from tandem.engine.sampling import SamplingParams
from tandem.predict.checkpoint import PredictorBundle
from tandem.predict.online import LengthPredictor


def _prompts(samples_prompts: list[list[int]] | None, bos: int, count: int) -> list[list[int]]:
    if samples_prompts:
        return [samples_prompts[i % len(samples_prompts)] for i in range(count)]
    return [[bos] for _ in range(count)]


def _time_call(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - start) * 1000.0


def measure_overhead(
    model_spec: str,
    bundle: PredictorBundle,
    identity: ModelIdentity,
    *,
    batch_size: int = 32,
    decode_steps: int = 128,
    calls_per_step: int = 5,
    prompts: list[list[int]] | None = None,
) -> dict[str, Any]:
    """Median decode-step and predictor latencies and their ratio (see the module docstring)."""
    loaded = load_model(model_spec)
    require_same_model(identity, loaded.identity, f"model '{model_spec}' for the overhead run")
    predictor = LengthPredictor.from_bundle(bundle, "ares").to(loaded.device)
    runner = ModelRunner(loaded, tap_layers=(bundle.layer,), max_batch_size=batch_size)
    bos = int(getattr(loaded.model.config, "bos_token_id", 0) or 0)
    chosen = _prompts(prompts, bos, batch_size)
    room = loaded.identity.context_tokens - max(len(p) for p in chosen) - 1
    steps = max(1, min(decode_steps, room))
    params = SamplingParams(temperature=1.0, max_new_tokens=steps + 1, ignore_eos=True)
    for p in chosen:
        runner.add_request(p, params)
    runner.step()  # prefill
    refresh_rows = max(1, math.ceil(batch_size / bundle.every_tokens))
    step_ms, call_ms, refresh_ms = [], [], []
    for _ in range(steps):
        start = time.perf_counter()
        out = runner.step()
        step_ms.append((time.perf_counter() - start) * 1000.0)
        assert out is not None and len(out.seq_ids) == batch_size
        hidden = out.hidden_by_layer[bundle.layer]
        for _ in range(calls_per_step):
            call_ms.append(_time_call(predictor.predict, hidden))
            refresh_ms.append(_time_call(predictor.predict, hidden[:refresh_rows]))
    decode = float(np.median(step_ms))
    call = float(np.median(call_ms))
    refresh = float(np.median(refresh_ms))
    return {
        "batch_size": batch_size,
        "decode_steps": steps,
        "torch_threads": torch.get_num_threads(),
        "decode_step_ms": decode,
        "predictor_ms": call,
        "overhead_pct_of_decode_step": 100.0 * call / decode,
        "refresh_rows_per_step": refresh_rows,
        "refresh_predictor_ms": refresh,
        "refresh_overhead_pct_of_decode_step": 100.0 * refresh / decode,
        "ares_params": sum(p.numel() for p in predictor.head.parameters()),
        "served_model_params": sum(p.numel() for p in loaded.model.parameters()),
    }
