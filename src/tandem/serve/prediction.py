"""Remaining-length predictions inside a decode worker (the live twin of ``sim.prediction``).

Sources (``tandem serve --prediction``):

- ``none``: no predictions (views carry ``None``; ares placement falls back to current load).
- ``oracle``: ``max_tokens - generated`` for requests with ``ignore_eos``, whose length is known
  (the upper bound on what prediction can give, and what makes a forced-length replay
  meaningful); ``None`` for the others.
- ``progress-mean``: the mean remaining length given the tokens generated so far, learned
  online from the output lengths of requests this worker finished at end-of-sequence:
  ``E[L - g | L > g]`` over the last ``window`` of them, capped by what ``max_tokens`` leaves.
  ``None`` until ``min_samples`` have finished.

- ``head`` / ``head:CKPT``: the ARES head (``predict.online.LengthPredictor``) on the hidden
  states the decode step already returned (``StepOutput.hidden_by_layer``; no extra forward).
  ``observe`` runs it once per step on the rows that are due (no prediction yet, or
  ``refresh_tokens`` generated since the last), batched. ``head`` alone is the head shipped for
  the embedded stories260K (``predict/data/stories260k_head.pt``, made by
  ``scripts/train_stories_head.py``; ``docs/prediction.md``); ``head:CKPT`` a checkpoint of
  ``tandem predict train`` for the served model (another model's is refused). A request is
  predicted at its first decode step here, then at every ``refresh_tokens``-th step of the
  worker together with every other running request (one call per step, due rows only).
  ``None`` before its first decode step.

A prediction is refreshed every ``refresh_tokens`` generated tokens and counts down by one per
token in between, as in the simulator; it is capped by what ``max_tokens`` leaves.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tandem.errors import ConfigError, TandemError

if TYPE_CHECKING:
    from tandem.engine.identity import ModelIdentity
    from tandem.engine.runner import StepOutput
    from tandem.predict.online import LengthPredictor

#: The head shipped in the package (for the embedded stories260K).
DEFAULT_HEAD = "stories260k_head.pt"


SOURCES = ("none", "oracle", "progress-mean", "head")


def parse_source(source: str) -> tuple[str, str | None]:
    """``(kind, checkpoint path or None)``; ``ConfigError`` for an unknown or malformed name
    (``head:CKPT`` takes a path; whether it is a usable checkpoint is ``check_source``'s
    question, asked before any model loads)."""
    kind, sep, ckpt = source.partition(":")
    if kind not in SOURCES or (sep and kind != "head"):
        raise ConfigError(
            f"unknown --prediction '{source}'; known: {', '.join(SOURCES)}, head:CKPT"
        )
    if sep and not ckpt:
        raise ConfigError("--prediction head:CKPT needs a checkpoint path after 'head:'")
    return kind, (ckpt or None) if kind == "head" else None


def default_head_path() -> Path:
    """The shipped stories260K head."""
    return Path(str(resources.files("tandem.predict") / "data" / DEFAULT_HEAD))


def check_source(source: str) -> None:
    """Refuse, before any model loads, a source that cannot work: an unknown name, or a head
    checkpoint that is missing or not a predictor checkpoint. (Whether it was made for the
    served model is checked when the decode workers have loaded it.)"""
    kind, ckpt = parse_source(source)
    if kind == "head":
        _load_head(source, ckpt, None)


def _load_head(source: str, ckpt: str | None, identity: ModelIdentity | None) -> LengthPredictor:
    from tandem.predict.checkpoint import load_bundle
    from tandem.predict.online import LengthPredictor

    path = Path(ckpt) if ckpt else default_head_path()
    try:
        return LengthPredictor.from_bundle(load_bundle(path, identity))
    except TandemError as exc:
        hint = ""
        if ckpt is None:
            hint = (
                " (the shipped head is for the embedded stories260K; for another model train "
                "one with 'tandem predict collect' and 'tandem predict train' and pass "
                "--prediction head:CKPT)"
            )
        raise ConfigError(f"--prediction {source}: {exc}{hint}") from exc


class LivePredictor:
    """Predictions of one decode worker's requests."""

    def __init__(
        self,
        source: str,
        *,
        refresh_tokens: int = 20,
        window: int = 2000,
        min_samples: int = 20,
        identity: ModelIdentity | None = None,
    ) -> None:
        """``identity``: the served model's, which a head checkpoint must have been made for
        (required by ``head``)."""
        kind, ckpt = parse_source(source)
        if refresh_tokens < 1:
            raise ConfigError(f"prediction refresh must be >= 1 token, got {refresh_tokens}")
        self.source = source
        self.kind = kind
        self.refresh_tokens = refresh_tokens
        self.head: LengthPredictor | None = None
        if kind == "head":
            if identity is None:
                raise ConfigError("--prediction head needs the served model's identity")
            self.head = _load_head(source, ckpt, identity)
        #: Head calls and rows predicted so far (for tests and benchmarks).
        self.head_calls = 0
        self.head_rows = 0
        self._head_on: Any = None  # the device the head's weights are on
        self._num_steps = 0  # decode steps observed
        self._min_samples = min_samples
        self._recent: deque[int] = deque(maxlen=window)
        self._sorted: list[int] = []
        self._suffix: list[float] = [0.0]  # _suffix[i] = sum(_sorted[i:])
        self._dirty = False
        # request id -> (prediction at the last refresh, generated then)
        self._by_request: dict[str, tuple[float | None, int]] = {}

    @property
    def tap_layers(self) -> tuple[int, ...] | None:
        """Layers the decode step must return hidden states of (None: no hidden states used)."""
        return None if self.head is None else (self.head.layer,)

    def observe(self, request_ids: Sequence[str], step: StepOutput) -> None:
        """One decode step's rows (their hidden states at ``step.hidden_by_layer``); the head
        predicts the rows that are due, in one call: a row the head has not seen yet, and on
        every ``refresh_tokens``-th step every row (so after its first prediction a row is
        refreshed every ``refresh_tokens`` tokens, and the rows share their refresh steps:
        one call of many rows costs little more than one of a few, see
        ``benchmarks/predictor_cost.py``). Row i's state is the one after
        ``num_output_tokens[i] - 1`` generated tokens, so its prediction is stored with that
        count. Rows that finished in this step are skipped."""
        head = self.head
        if head is None:
            return
        aligned = self._num_steps % self.refresh_tokens == 0
        self._num_steps += 1
        known = self._by_request
        if not aligned and known.keys() >= set(request_ids):
            return  # nothing new, no refresh step: most steps
        rows: list[int] = []
        generated: list[int] = []
        for i, (request_id, count, reason) in enumerate(
            zip(request_ids, step.num_output_tokens, step.finish_reasons, strict=True)
        ):
            if reason is None and (aligned or request_id not in known):
                rows.append(i)
                generated.append(count - 1)
        if not rows:
            return
        hidden = step.hidden_by_layer[head.layer]
        if self._head_on != hidden.device:
            head.to(hidden.device)
            self._head_on = hidden.device
        values = head.predict_rows(hidden, rows, generated)
        self.head_calls += 1
        self.head_rows += len(rows)
        for i, g, value in zip(rows, generated, values, strict=True):
            self._by_request[request_ids[i]] = (float(value), g)

    @property
    def enabled(self) -> bool:
        return self.source != "none"

    def finished(self, output_tokens: int, natural: bool) -> None:
        """A request ended with ``output_tokens``; ``natural`` if at end-of-sequence."""
        if self.kind == "progress-mean" and natural:
            self._recent.append(output_tokens)
            self._dirty = True

    def forget(self, request_id: str) -> None:
        self._by_request.pop(request_id, None)

    def remaining(
        self, request_id: str, generated: int, max_new_tokens: int, ignore_eos: bool
    ) -> float | None:
        """The request's predicted remaining tokens now (refreshed when due)."""
        last = self._by_request.get(request_id)
        if self.head is not None:  # refreshed by observe, never here
            if last is None or last[0] is None:
                return None
            left = last[0] - (generated - last[1])
            room = max_new_tokens - generated
            return float(max(room, 0)) if left > room else max(0.0, left)
        if not self.enabled:
            return None
        if last is None or generated - last[1] >= self.refresh_tokens or last[0] is None:
            last = (self._predict(generated, max_new_tokens, ignore_eos), generated)
            self._by_request[request_id] = last
        value, at = last
        return None if value is None else max(0.0, value - (generated - at))

    def _predict(self, generated: int, max_new_tokens: int, ignore_eos: bool) -> float | None:
        room = float(max(0, max_new_tokens - generated))
        if self.kind == "oracle":
            return room if ignore_eos else None
        if len(self._recent) < self._min_samples:
            return None
        if self._dirty:
            self._sorted = sorted(self._recent)
            self._suffix = [0.0] * (len(self._sorted) + 1)
            for i in range(len(self._sorted) - 1, -1, -1):
                self._suffix[i] = self._suffix[i + 1] + self._sorted[i]
            self._dirty = False
        start = bisect.bisect_right(self._sorted, generated)
        longer = len(self._sorted) - start
        if longer == 0:
            return min(room, 1.0)  # longer than everything seen: about to end
        return min(room, self._suffix[start] / longer - generated)
