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

A prediction is refreshed every ``refresh_tokens`` generated tokens and counts down by one per
token in between, as in the simulator. (The ARES head on the decode step's hidden states is
issue 15's next step.)
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tandem.errors import ConfigError

if TYPE_CHECKING:
    from tandem.engine.runner import StepOutput

SOURCES = ("none", "oracle", "progress-mean")


class LivePredictor:
    """Predictions of one decode worker's requests."""

    def __init__(
        self, source: str, *, refresh_tokens: int = 20, window: int = 2000, min_samples: int = 20
    ) -> None:
        if source not in SOURCES:
            raise ConfigError(f"unknown prediction source '{source}'; known: {', '.join(SOURCES)}")
        if refresh_tokens < 1:
            raise ConfigError(f"prediction refresh must be >= 1 token, got {refresh_tokens}")
        self.source = source
        self.refresh_tokens = refresh_tokens
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
        return None

    def observe(self, request_ids: Sequence[str], step: StepOutput) -> None:
        """One decode step's rows (their hidden states at ``step.hidden_by_layer``); sources
        that read hidden states refresh the rows that are due from them."""

    @property
    def enabled(self) -> bool:
        return self.source != "none"

    def finished(self, output_tokens: int, natural: bool) -> None:
        """A request ended with ``output_tokens``; ``natural`` if at end-of-sequence."""
        if self.source == "progress-mean" and natural:
            self._recent.append(output_tokens)
            self._dirty = True

    def forget(self, request_id: str) -> None:
        self._by_request.pop(request_id, None)

    def remaining(
        self, request_id: str, generated: int, max_new_tokens: int, ignore_eos: bool
    ) -> float | None:
        """The request's predicted remaining tokens now (refreshed when due)."""
        if not self.enabled:
            return None
        last = self._by_request.get(request_id)
        if last is None or generated - last[1] >= self.refresh_tokens or last[0] is None:
            last = (self._predict(generated, max_new_tokens, ignore_eos), generated)
            self._by_request[request_id] = last
        value, at = last
        return None if value is None else max(0.0, value - (generated - at))

    def _predict(self, generated: int, max_new_tokens: int, ignore_eos: bool) -> float | None:
        room = float(max(0, max_new_tokens - generated))
        if self.source == "oracle":
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
