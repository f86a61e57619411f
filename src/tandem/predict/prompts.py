"""A diverse prompt set for a story model, made from the model's own story openings.

How: for prompt i, draw an opening length k uniformly in [min_opening_tokens,
max_opening_tokens] and a sampling seed, both from ``numpy.random.SeedSequence([seed, i])``;
sample k tokens from BOS at the given temperature; the prompt is BOS + those k tokens. An
opening that already ends the story (an end token inside the first k) is discarded, as are
duplicates, and more seeds are drawn until the set is full. The set depends only on the model
and ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.engine.loader import LoadedModel
from tandem.engine.runner import ModelRunner
from tandem.engine.sampling import SamplingParams
from tandem.engine.sequence import FinishedSequence
from tandem.errors import ConfigError


@dataclass(frozen=True)
class OpeningSpec:
    """How openings are drawn; recorded in the sample file's header."""

    num_prompts: int
    seed: int = 0
    min_opening_tokens: int = 4
    max_opening_tokens: int = 32
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.num_prompts < 1:
            raise ConfigError(f"num_prompts must be >= 1, got {self.num_prompts}")
        if not 1 <= self.min_opening_tokens <= self.max_opening_tokens:
            raise ConfigError("need 1 <= min_opening_tokens <= max_opening_tokens")


def bos_token_id(loaded: LoadedModel) -> int:
    """The model's beginning-of-sequence token; openings start from it."""
    token = getattr(loaded.model.config, "bos_token_id", None)
    if token is None:
        raise ConfigError("the model has no BOS token: give prompts explicitly (--prompts FILE)")
    return int(token)


def story_openings(
    loaded: LoadedModel, spec: OpeningSpec, max_batch_size: int = 64
) -> list[tuple[int, ...]]:
    """``spec.num_prompts`` distinct prompts (BOS + a sampled opening), in draw order."""
    bos = bos_token_id(loaded)
    end = set(loaded.eos_token_ids)
    runner = ModelRunner(loaded, max_batch_size=max_batch_size, seed=spec.seed)
    prompts: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    draw = 0
    while len(prompts) < spec.num_prompts:
        if draw > 20 * spec.num_prompts + 100:
            raise ConfigError(
                f"could not draw {spec.num_prompts} distinct openings that do not end the story "
                f"({len(prompts)} after {draw} draws); raise the temperature or give prompts"
            )
        wanted = spec.num_prompts - len(prompts)
        batch = range(draw, draw + max(wanted + wanted // 10, 8))
        draw = batch.stop
        params = []
        for i in batch:
            k_seed, sample_seed = np.random.SeedSequence([spec.seed, i]).generate_state(2)
            k = int(
                np.random.default_rng(int(k_seed)).integers(
                    spec.min_opening_tokens, spec.max_opening_tokens + 1
                )
            )
            params.append(
                SamplingParams(
                    temperature=spec.temperature, max_new_tokens=k, seed=int(sample_seed)
                )
            )
        ids = [runner.add_request([bos], p) for p in params]
        done: dict[int, FinishedSequence] = {}
        while runner.has_unfinished():
            runner.step()
            done.update((f.seq_id, f) for f in runner.collect_finished())
        for seq_id in ids:
            opening = done[seq_id].output_token_ids
            prompt = (bos, *opening)
            if end.intersection(opening) or prompt in seen or len(prompts) >= spec.num_prompts:
                continue
            seen.add(prompt)
            prompts.append(prompt)
    return prompts
