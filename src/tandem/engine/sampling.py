"""Sampling parameters and the per-request sampler.

Each request owns a ``torch.Generator`` seeded from its own seed, and draws its token from its own
row of probabilities, so a request's output does not depend on which other requests share its
batch (up to floating-point differences in the logits, which can flip a near-tie).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tandem.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How one request is decoded.

    ``temperature`` 0 means greedy. ``max_new_tokens`` ``None`` means "until the context is
    full". ``seed`` ``None`` lets the runner derive one from its own seed and the request id.
    ``ignore_eos`` keeps generating past end-of-sequence tokens (benchmarks of fixed length).
    ``top_k`` ``None`` keeps every token; ``min_tokens`` forbids end-of-sequence tokens until
    that many tokens have been generated (as vLLM's ``min_tokens``).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int | None = None
    seed: int | None = None
    ignore_eos: bool = False
    top_k: int | None = None
    min_tokens: int = 0

    def __post_init__(self) -> None:
        if not self.temperature >= 0.0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1 (or None for no limit), got {self.top_k}")
        if self.min_tokens < 0:
            raise ConfigError(f"min_tokens must be >= 0, got {self.min_tokens}")


GREEDY = SamplingParams(temperature=0.0)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for one request, on the device where its probabilities live."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def _top_p_filter(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero the tail of each row beyond its nucleus (the smallest set with mass >= top_p)."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    # top_p 1.0 keeps everything, even where the cumulative sum rounds up to 1.0
    limit = torch.where(top_p >= 1.0, torch.full_like(top_p, 2.0), top_p)
    drop_sorted = mass_before >= limit.unsqueeze(-1)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    kept = probs.masked_fill(drop, 0.0)
    return kept / kept.sum(dim=-1, keepdim=True)


def _top_k_filter(probs: torch.Tensor, top_ks: Sequence[int | None]) -> torch.Tensor:
    """Keep each row's ``k`` most likely tokens (all of them where ``k`` is ``None``)."""
    vocab = probs.shape[-1]
    ks = torch.tensor([min(k or vocab, vocab) for k in top_ks], device=probs.device)
    sorted_probs = probs.sort(dim=-1, descending=True).values
    threshold = sorted_probs.gather(-1, (ks - 1).unsqueeze(-1))
    kept = probs.masked_fill(probs < threshold, 0.0)
    return kept / kept.sum(dim=-1, keepdim=True)


def sample_tokens(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator],
) -> list[int]:
    """One token per row of ``logits`` [B, V]; row i uses ``params[i]`` and ``generators[i]``."""
    logits = logits.float()
    greedy = logits.argmax(dim=-1).tolist()
    rows = [i for i, p in enumerate(params) if p.temperature > 0.0]
    if not rows:
        return [int(t) for t in greedy]
    index = torch.tensor(rows, device=logits.device)
    temps = torch.tensor([params[i].temperature for i in rows], device=logits.device)
    probs = torch.softmax(logits.index_select(0, index) / temps.unsqueeze(-1), dim=-1)
    top_ks = [params[i].top_k for i in rows]
    if any(k is not None for k in top_ks):
        probs = _top_k_filter(probs, top_ks)
    top_p = torch.tensor([params[i].top_p for i in rows], device=logits.device)
    if bool((top_p < 1.0).any()):
        probs = _top_p_filter(probs, top_p)
    tokens = list(greedy)
    for k, i in enumerate(rows):
        tokens[i] = int(torch.multinomial(probs[k], 1, generator=generators[i]).item())
    return [int(t) for t in tokens]
