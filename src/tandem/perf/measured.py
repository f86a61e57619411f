"""Cost model from tables a user measured on a real deployment (the SLO-aware allocation
paper's measurements: maximum prefill throughput at an input length, TPOT against batch size).

- Prefill: each measured point gives the time of one prompt, ``L / max_throughput(L)``; between
  points the time is interpolated linearly (through zero below the first point), beyond the last
  it follows the last segment's slope. A batch takes the sum of its prompts' times.
- Chunked prefill: the table has no context dimension, so a chunk of ``k`` tokens after ``c``
  computed ones takes the marginal time ``T(c + k) - T(c)`` of its prompt (``T`` the
  interpolated prompt time): a prompt's chunks sum to its unchunked time, and where throughput
  falls with length (attention) the later chunks cost more. With one measured point ``T`` is
  linear and every token costs the same, wherever it sits in its prompt.
- Decode: the step time at batch ``B`` is the TPOT table interpolated linearly; beyond the table
  it follows the end segment's slope (never below ``tpot_0 * B / B_0`` at the small end).
- The table has no context dimension: the step time's slope per context token is 0 (the table
  was measured at the deployment's own context lengths).
- CUDA-graph padding (off unless ``graph_batch_sizes`` is given): vLLM and SGLang replay a
  decode step as a CUDA graph captured for a few batch sizes, padding a batch up to the next
  captured size (``GRAPH_BATCH_SIZES``: both pad to multiples of 8 from 8 to 160, by default).
  A step of batch ``B`` then costs what the padded batch ``pad(B)`` costs, so the step time is a
  staircase, not a line. The table was measured on such an engine, so each point is read as the
  time of its padded batch (the point at batch 30 is the time of 32), the table is
  interpolated over the padded sizes, and a batch is priced at its padded size: the table's own
  points are reproduced exactly, and a batch just past a captured size pays for the whole next
  one. Above the largest captured size the engine runs eagerly, unpadded.

Both tables are validated non-decreasing, so piecewise-linear interpolation is monotone.
Queries outside the table are answered and flagged once (``OutOfMeasuredRangeWarning``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

from tandem.errors import ConfigError
from tandem.perf.base import CostModel
from tandem.perf.ranges import MeasuredSpans, Usage, WarnOnce

#: Default decode CUDA-graph capture sizes: SGLang's (``cuda_graph_runner``, without speculative
#: decoding, plus the 160-256 range it adds on GPUs over 90 GB such as the H200) and vLLM's
#: (``[1, 2, 4] + range(8, 513, 8)``, ``cuda_graph_sizes`` = 512 by default).
GRAPH_BATCH_SIZES: dict[str, tuple[int, ...]] = {
    "sglang": tuple(sorted({1, 2, 4, 8, *range(16, 161, 8), *range(160, 257, 8)})),
    "vllm": (1, 2, 4, *range(8, 513, 8)),
}


def padded_batch(batch_size: int, sizes: Sequence[int]) -> int:
    """The captured size a batch runs as: the smallest ``>= batch_size``, or the batch itself
    above the largest (eager)."""
    i = bisect_left(sizes, batch_size)
    return sizes[i] if i < len(sizes) else batch_size


@dataclass(frozen=True, slots=True)
class PrefillPoint:
    """Maximum prefill throughput measured at one input length."""

    input_len_tokens: int
    max_throughput_tokens_per_s: float

    @property
    def time_s(self) -> float:
        return self.input_len_tokens / self.max_throughput_tokens_per_s


@dataclass(frozen=True, slots=True)
class DecodePoint:
    """Time per output token measured at one decode batch size."""

    batch_size: int
    tpot_s: float


def interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> tuple[float, bool]:
    """Piecewise-linear ``y(x)`` through the points (``xs`` increasing, ``ys`` non-decreasing),
    extended linearly beyond both ends; returns ``(y, outside)``. With one point, ``y`` is
    constant."""
    if len(xs) == 1:
        return ys[0], x != xs[0]
    i = min(max(bisect_left(xs, x) - 1, 0), len(xs) - 2)
    slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
    return ys[i] + slope * (x - xs[i]), x < xs[0] or x > xs[-1]


@dataclass(frozen=True)
class MeasuredCostModel(CostModel):
    """A deployment's measured tables; the raw values stay readable for the capacity planner."""

    name: str
    model: str
    hardware: str
    num_gpus: int
    prefill_points: tuple[PrefillPoint, ...]
    #: Fixed latency before the first token that does not occupy the prefill instance.
    overhead_s: float
    tpot_points: tuple[DecodePoint, ...]
    kv_bytes_per_token: int
    kv_capacity_tokens: int
    link_bandwidth_bytes_per_s: float = 25e9
    link_latency_s: float = 1e-4
    source: str = ""
    #: Decode CUDA-graph capture sizes, increasing (see the module doc); empty: no padding.
    graph_batch_sizes: tuple[int, ...] = ()
    _latch: WarnOnce = field(default_factory=WarnOnce, compare=False, repr=False)
    #: The TPOT table at padded batch sizes (built once when padding is on).
    _padded_table: tuple[tuple[float, ...], tuple[float, ...]] = field(
        default=((), ()), init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        # Files are validated field by field on loading; this guards direct construction.
        xs = [p.input_len_tokens for p in self.prefill_points]
        bs = [p.batch_size for p in self.tpot_points]
        if not xs or not bs or xs != sorted(set(xs)) or bs != sorted(set(bs)):
            raise ConfigError(
                f"measured profile '{self.name}': needs prefill and TPOT points with "
                "increasing input lengths and batch sizes"
            )
        times = [p.time_s for p in self.prefill_points]
        tpots = [p.tpot_s for p in self.tpot_points]
        if min(times + tpots) <= 0 or times != sorted(times) or tpots != sorted(tpots):
            raise ConfigError(
                f"measured profile '{self.name}': prefill times and TPOTs must be positive and "
                "non-decreasing"
            )
        gs = list(self.graph_batch_sizes)
        if gs and (gs != sorted(set(gs)) or gs[0] < 1):
            raise ConfigError(
                f"measured profile '{self.name}': CUDA-graph batch sizes must be positive and "
                "increasing"
            )
        if gs:
            by_padded: dict[int, float] = {}
            for p in self.tpot_points:
                padded = padded_batch(p.batch_size, gs)
                # Two points padded alike measured the same graph: keep the slower.
                by_padded[padded] = max(by_padded.get(padded, 0.0), p.tpot_s)
            table = (
                tuple(float(b) for b in sorted(by_padded)),
                tuple(by_padded[b] for b in sorted(by_padded)),
            )
            object.__setattr__(self, "_padded_table", table)

    def request_overhead_s(self) -> float:
        return self.overhead_s

    def prefill_throughput_tokens_per_s(self, input_len_tokens: int) -> float:
        """Maximum prefill throughput at this input length (interpolated via the time)."""
        return input_len_tokens / self._prompt_time_s(input_len_tokens)

    def prefill_time_s(self, prompt_lens: Sequence[int]) -> float:
        return sum(self._prompt_time_s(n) for n in prompt_lens if n > 0)

    def prefill_chunks_time_s(self, chunks: Sequence[tuple[int, int]]) -> float:
        time_s = 0.0
        for c, k in chunks:
            if k > 0:
                # Quiet: a chunk's end is a prefix, not a prompt; prompt lengths outside the
                # table are reported from the run's usage (``extrapolations``).
                time_s += self._interpolated_s(c + k) - (self._interpolated_s(c) if c else 0.0)
        return time_s

    def _interpolated_s(self, num_tokens: int) -> float:
        xs = [0.0] + [float(p.input_len_tokens) for p in self.prefill_points]
        ys = [0.0] + [p.time_s for p in self.prefill_points]
        return interpolate(xs, ys, num_tokens)[0]

    def _prompt_time_s(self, num_tokens: int) -> float:
        xs = [0.0] + [float(p.input_len_tokens) for p in self.prefill_points]
        ys = [0.0] + [p.time_s for p in self.prefill_points]
        time_s, _ = interpolate(xs, ys, num_tokens)
        lo, hi = xs[1], xs[-1]
        if num_tokens < lo or num_tokens > hi:
            measured = f"{lo:.0f}-{hi:.0f}" if hi > lo else f"only at {lo:.0f}"
            self._latch.warn(
                self.name, f"prompt of {num_tokens} tokens; input length measured {measured}"
            )
        return time_s

    def decode_step_coeffs(self, batch_size: int) -> tuple[float, float]:
        xs = [float(p.batch_size) for p in self.tpot_points]
        ys = [p.tpot_s for p in self.tpot_points]
        outside = batch_size < xs[0] or batch_size > xs[-1]
        if self.graph_batch_sizes:
            step_s = self._padded_step_s(batch_size)
        else:
            step_s, _ = interpolate(xs, ys, batch_size)
            if batch_size < xs[0]:
                step_s = max(step_s, ys[0] * batch_size / xs[0])
        if outside:
            self._latch.warn(
                self.name,
                f"decode batch of {batch_size}; batch size measured {xs[0]:.0f}-{xs[-1]:.0f}",
            )
        return step_s, 0.0

    def _padded_step_s(self, batch_size: int) -> float:
        """The table read at padded batch sizes, priced at ``batch_size``'s padded size."""
        xs, ys = self._padded_table
        b = padded_batch(batch_size, self.graph_batch_sizes)
        step_s, _ = interpolate(xs, ys, b)
        if b < xs[0]:
            step_s = max(step_s, ys[0] * b / xs[0])
        return step_s

    def kv_transfer_time_s(self, num_tokens: int) -> float:
        if num_tokens <= 0:
            return 0.0
        return self.link_latency_s + (
            num_tokens * self.kv_bytes_per_token / self.link_bandwidth_bytes_per_s
        )

    def measured_spans(self) -> MeasuredSpans:
        """The tables' input lengths and batch sizes (no context dimension: unlimited)."""
        lengths = [p.input_len_tokens for p in self.prefill_points]
        batches = [p.batch_size for p in self.tpot_points]
        return MeasuredSpans((lengths[0], lengths[-1]), (batches[0], batches[-1]))

    def extrapolations(self, usage: Usage) -> list[str]:
        """Prompts outside the measured input lengths, decode batches outside the TPOT
        table (the table has no context dimension: context is never flagged)."""
        out = []
        lengths = [p.input_len_tokens for p in self.prefill_points]
        batches = [p.batch_size for p in self.tpot_points]
        for what, lo, hi, measured in (
            ("prompt lengths", usage.min_prompt_tokens, usage.max_prompt_tokens, lengths),
            (
                "decode batch sizes",
                usage.min_decode_batch_size,
                usage.max_decode_batch_size,
                batches,
            ),
        ):
            low = lo is not None and lo < measured[0]
            high = hi is not None and hi > measured[-1]
            if low or high:
                used = f"{lo:,}-{hi:,}" if lo is not None and hi is not None else f"{lo or hi:,}"
                span = (
                    f"measured {measured[0]:,}-{measured[-1]:,}"
                    if len(measured) > 1
                    else f"measured at {measured[0]:,} only"
                )
                unit = " tokens" if what == "prompt lengths" else ""
                out.append(f"{what} {used}{unit}, {span}")
        return out
