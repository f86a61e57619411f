"""Helpers of the predictor tests: synthetic sample files with a known signal."""

from __future__ import annotations

import numpy as np

from tandem.engine.identity import ModelIdentity
from tandem.predict.dataset import LengthSamples


def make_identity(hidden_size: int = 16, fingerprint: str = "f" * 64) -> ModelIdentity:
    return ModelIdentity("synthetic", fingerprint, hidden_size, 4, 100, 1024)


def synthetic_samples(
    num_requests: int = 120,
    hidden_size: int = 16,
    every: int = 20,
    seed: int = 0,
    signal: float = 1.0,
) -> LengthSamples:
    """Requests of 60-400 tokens whose hidden states carry log(remaining) in dimension 0."""
    rng = np.random.default_rng(seed)
    ident = make_identity(hidden_size)
    rid, gen, rem, hid, mid = [], [], [], [], []
    totals = rng.integers(60, 400, size=num_requests)
    for r, total in enumerate(totals):
        for g in range(0, int(total), every):
            x = rng.normal(size=hidden_size)
            x[0] = signal * np.log(total - g) + 0.1 * rng.normal()
            x[1] = g / 100.0
            rid.append(r)
            gen.append(g)
            rem.append(total - g)
            hid.append(x)
            mid.append(x + 0.05 * rng.normal(size=hidden_size))
    hid_a = np.asarray(hid, np.float32)
    first = np.asarray(gen) == 0
    prompts = [[1, 5 + r % 50] for r in range(num_requests)]
    arrays = {
        "sample_request_id": np.asarray(rid, np.int32),
        "sample_tokens_generated": np.asarray(gen, np.int32),
        "sample_remaining_tokens": np.asarray(rem, np.int32),
        "sample_hidden": hid_a,
        "sample_hidden_mid": np.asarray(mid, np.float32),
        "request_id": np.arange(num_requests, dtype=np.int32),
        "request_prompt_tokens": np.full(num_requests, 2, np.int32),
        "request_output_tokens": totals.astype(np.int32),
        "request_finished_eos": np.ones(num_requests, bool),
        "request_prompt_hidden": hid_a[first],
        "request_prompt_mean_mid": np.asarray(mid, np.float32)[first],
        "prompt_token_ids_flat": np.asarray([t for p in prompts for t in p], np.int32),
        "prompt_offsets": np.arange(0, 2 * num_requests + 1, 2, dtype=np.int64),
    }
    return LengthSamples(ident, 4, 2, every, arrays, {"kind": "synthetic"})
