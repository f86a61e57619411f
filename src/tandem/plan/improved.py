"""Tandem's planner beyond the paper: queueing with the real prompt-length distribution, shared
or split prefill queues, percentile TTFT, context-aware decode capped by KV, integer search.

Prefill: a request's service time is ``prefill_time_s([L])`` for its prompt ``L`` (the cost
model, or the paper's table); their mean and squared CV feed an M/G/c queue (``queueing``).
``dispatch="shared"`` models one queue for all ``N_P`` instances (the simulator's
least-queued-tokens dispatch behaves close to it); ``"split"`` models ``N_P`` independent
queues each receiving ``lambda / N_P``. TTFT = overhead + handoff + batching + wait + service
(percentiles: the wait's quantile plus the service time's quantile, which errs on the safe
side). ``handoff`` is half a decode step (the KV copy starts at a decode step boundary);
``batching`` is the delay from prefilling several queued prompts as one batch
(``PrefillModel.batching_s``, gated batch service in ``queueing.batch_residual_s``).

Decode: at context ``ctx`` (the time-averaged context of a request in the batch, ``L_in +
L_out/2`` for fixed lengths), a batch ``B`` steps in ``step(B) = base(B) + slope(B)*B*ctx``.
For ``N_D`` instances the mean batch ``B`` solves ``B / step(B) = lambda * L_out / N_D``
(Little's law). The batch a request sees averages over its life; for Poisson arrivals it is
``B + 1`` with standard deviation about ``sqrt(2B/3)`` (M/G/inf, triangular autocorrelation
averaged over one residence time), so ``N_D`` meets the TPOT SLO at quantile ``q`` when
``step(B + 1 + z_q*sqrt(2B/3)) <= TPOT`` and that batch fits ``min(max_batch, KV / (L_in +
L_out))``. The fluctuation term is amplified by ``1/sqrt(1-g)``, ``g`` the elasticity of the step
time in the batch (``DecodeModel.feedback``): a bigger batch steps slower, so its requests stay
longer and the batch grows further.

Integers: the smallest ``N_P`` and the smallest ``N_D`` meeting their SLO (the two halves are
independent in the model, so this is also the cheapest pair: fewest total, then fewest decode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from tandem.perf.base import CostModel
from tandem.plan.inputs import WorkloadShape
from tandem.plan.queueing import (
    QUEUE_CS2,
    batch_residual_s,
    erlang_c,
    max_rate_rps,
    mean_wait_s,
    wait_quantile_s,
)

MAX_INSTANCES = 100_000
_MAX_SAMPLES = 4000


@dataclass(frozen=True)
class PrefillModel:
    """Service-time moments and the queue assumptions of the prefill side."""

    mean_service_s: float
    cs2: float
    service_quantile_s: float
    overhead_s: float
    arrival_cv2: float
    dispatch: str
    ttft_quantile: float | None
    #: How many mean prompts fit one prefill batch (token budget / mean prompt).
    max_batch_prompts: int = 1
    #: Mean wait for the decode instance's next step boundary before the KV copy starts.
    handoff_s: float = 0.0

    def ttft_s(self, rate_rps: float, num_prefill: int) -> float:
        """Predicted TTFT (mean, or the quantile) with ``num_prefill`` instances."""
        shared = self.dispatch == "shared"
        c = num_prefill if shared else 1
        lam = rate_rps if shared else rate_rps / num_prefill
        fixed = self.overhead_s + self.handoff_s + self.batching_s(rate_rps, num_prefill)
        if self.ttft_quantile is None:
            wait = mean_wait_s(lam, c, self.mean_service_s, self.cs2, self.arrival_cv2)
            return fixed + self.mean_service_s + wait
        wait = wait_quantile_s(
            lam, c, self.mean_service_s, self.cs2, self.ttft_quantile, self.arrival_cv2
        )
        return fixed + self.service_quantile_s + wait

    def batching_s(self, rate_rps: float, num_prefill: int) -> float:
        """Extra TTFT from batched prefill: a request that finds its instance busy is
        prefilled together with the requests that reach that instance before the running
        batch ends, and finishes only when they do. Extra = P(wait) x share x (work arriving
        during the running batch's residual) = ``C * share * rho * residual`` (``C = 1`` for a
        percentile: the request at the quantile is one that waited), at most the prompts that
        still fit the batch."""
        if self.max_batch_prompts <= 1 or rate_rps <= 0:
            return 0.0
        lam = rate_rps / num_prefill
        rho = lam * self.mean_service_s
        if rho >= 1.0:
            return math.inf
        second = self.mean_service_s**2 * (1.0 + self.cs2)
        k = self.max_batch_prompts
        residual = batch_residual_s(lam, self.mean_service_s, second, k * self.mean_service_s)
        # A quantile request is one that waited; the mean weighs by the chance of waiting.
        if self.ttft_quantile is None:
            p_wait = erlang_c(num_prefill, rate_rps * self.mean_service_s)
        else:
            p_wait = 1.0
        # Join-shortest-queue sends later arrivals to the other instances first; the share
        # that still reaches this one is taken as 1/sqrt(N_P), the diffusion-scale imbalance
        # of JSQ queues (an approximation, checked against the simulator only).
        share = 1.0 / math.sqrt(num_prefill)
        return min(p_wait * rho * residual * share, (k - 1) * self.mean_service_s)

    def attainment(self, rate_rps: float, num_prefill: int, ttft_slo_s: float) -> float:
        """Predicted share of requests within the TTFT SLO: the wait is 0 with probability
        ``1 - C``, else exponential with mean ``Wq / C`` (the quantile model's tail), on top
        of overhead, hand-off, mean batching delay and the mean service."""
        shared = self.dispatch == "shared"
        c = num_prefill if shared else 1
        lam = rate_rps if shared else rate_rps / num_prefill
        if lam * self.mean_service_s >= c:
            return 0.0
        slack = ttft_slo_s - (
            self.overhead_s
            + self.handoff_s
            + self.mean_service_s
            + self.batching_s(rate_rps, num_prefill)
        )
        if slack < 0:
            return 0.0
        wq = mean_wait_s(lam, c, self.mean_service_s, self.cs2, self.arrival_cv2)
        p_wait = erlang_c(c, lam * self.mean_service_s)
        if wq <= 0 or p_wait <= 0:
            return 1.0
        return 1.0 - p_wait * math.exp(-slack * p_wait / wq)

    def floor_s(self) -> float:
        """TTFT with no queueing at all: below this no instance count helps."""
        service = self.mean_service_s if self.ttft_quantile is None else self.service_quantile_s
        return self.overhead_s + self.handoff_s + service


def prefill_model(
    cost: CostModel,
    shape: WorkloadShape,
    *,
    queue: str,
    dispatch: str,
    ttft_quantile: float | None,
    overhead_s: float,
    token_budget: int = 0,
    handoff_s: float = 0.0,
) -> PrefillModel:
    prompts = shape.prompts()
    if prompts.size > _MAX_SAMPLES:
        prompts = np.random.default_rng(0).choice(prompts, _MAX_SAMPLES, replace=False)
    times = np.array([cost.prefill_time_s([int(n)]) for n in prompts], dtype=float)
    mean_s = float(times.mean())
    measured_cs2 = float(times.var() / mean_s**2) if mean_s > 0 else 0.0
    cs2 = QUEUE_CS2[queue]
    q = 0.5 if ttft_quantile is None else ttft_quantile
    return PrefillModel(
        mean_service_s=mean_s,
        cs2=measured_cs2 if cs2 is None else cs2,
        service_quantile_s=float(np.quantile(times, q)),
        overhead_s=overhead_s,
        arrival_cv2=shape.arrival_cv2,
        dispatch=dispatch,
        ttft_quantile=ttft_quantile,
        max_batch_prompts=max(1, int(token_budget // max(1.0, shape.mean_input_tokens))),
        handoff_s=handoff_s,
    )


def min_prefill(model: PrefillModel, rate_rps: float, ttft_slo_s: float) -> int | None:
    """Smallest ``N_P`` whose predicted TTFT meets the SLO; ``None`` if none can."""
    if model.floor_s() >= ttft_slo_s:
        return None
    lo = max(1, math.floor(rate_rps * model.mean_service_s))
    n = lo
    while n <= MAX_INSTANCES:
        if model.ttft_s(rate_rps, n) <= ttft_slo_s:
            return n
        n += 1
    return None


def raw_prefill(model: PrefillModel, rate_rps: float, ttft_slo_s: float) -> float:
    """Fractional ``N_P``: load over the rate one instance (own queue) can take."""
    per_instance = max_rate_rps(
        lambda lam: model.ttft_s(lam, 1) <= ttft_slo_s, 1.0 / model.mean_service_s
    )
    return rate_rps / per_instance if per_instance > 0 else math.inf


@dataclass(frozen=True)
class DecodeModel:
    """Step time at the workload's context, and the batch cap."""

    cost: CostModel
    context_tokens: float
    batch_cap: int
    tpot_quantile: float
    #: Squared CV of output lengths (0: fixed lengths).
    output_cs2: float = 0.0
    #: Squared CV of the request stream leaving prefill (1: Poisson).
    stream_cv2: float = 1.0

    def step_s(self, batch: float) -> float:
        """Step time at a fractional batch: linear between the integer batches."""
        if batch <= 0:
            return 0.0
        lo = max(1, math.floor(batch))
        t_lo = self.cost.decode_step_time_s(lo, round(lo * self.context_tokens))
        if batch <= lo:
            return t_lo * batch / lo
        t_hi = self.cost.decode_step_time_s(lo + 1, round((lo + 1) * self.context_tokens))
        return t_lo + (t_hi - t_lo) * (batch - lo)

    def best_batch(self, tpot_slo_s: float) -> int:
        """Largest integer batch within the cap whose step meets the SLO (0 if none)."""
        best = 0
        for b in range(1, self.batch_cap + 1):
            if self.step_s(b) > tpot_slo_s:
                break
            best = b
        return best

    def mean_batch(self, tokens_per_s: float) -> float | None:
        """Mean batch serving ``tokens_per_s`` output tokens (``None``: beyond the cap)."""
        cap = float(self.batch_cap)
        if tokens_per_s >= cap / self.step_s(cap):
            return None
        lo, hi = 0.0, cap
        for _ in range(60):
            mid = (lo + hi) / 2.0
            if mid / self.step_s(mid) < tokens_per_s:
                lo = mid
            else:
                hi = mid
        return hi

    def seen_batch(self, tokens_per_s: float, num_decode: int = 1) -> float | None:
        """The ``tpot_quantile`` of the batch a request sees, averaged over its life."""
        mean = self.mean_batch(tokens_per_s)
        if mean is None:
            return None
        # Round-robin placement splits the stream: each instance's gaps have CV^2 / N_D.
        # Variable output lengths push the batch count back toward Poisson.
        ca2 = self.stream_cv2 / num_decode
        mix = self.output_cs2 / (1.0 + self.output_cs2)
        cv2 = ca2 + (1.0 - ca2) * mix
        z = NormalDist().inv_cdf(self.tpot_quantile)
        return mean + 1.0 + max(z, 0.0) * math.sqrt(2.0 * mean * cv2 / 3.0) * self.feedback(mean)

    def feedback(self, batch: float) -> float:
        """Amplification of batch fluctuations: a larger batch steps slower, so requests stay
        longer and the batch grows further. Linearised, the batch relaxes toward its mean
        ``1 - g`` times as fast, with ``g = B * step'(B) / step(B)`` (the step time's
        elasticity), so its variance grows by ``1 / (1 - g)`` and its spread by the root."""
        if batch <= 1:
            return 1.0
        h = 0.5
        slope = (self.step_s(batch + h) - self.step_s(batch - h)) / (2 * h)
        g = batch * slope / self.step_s(batch)
        return 1.0 / math.sqrt(1.0 - min(max(g, 0.0), 0.9))

    def attainment(self, tokens_per_s: float, num_decode: int, tpot_slo_s: float) -> float:
        """Predicted share of requests within the TPOT SLO: the batch a request sees is
        normal (mean ``B + 1``, the spread of ``seen_batch``) and must not exceed the largest
        batch meeting the SLO."""
        mean = self.mean_batch(tokens_per_s)
        best = self.best_batch(tpot_slo_s)
        if mean is None or best < 1:
            return 0.0
        z = NormalDist().inv_cdf(self.tpot_quantile)
        seen = self.seen_batch(tokens_per_s, num_decode)
        spread = (seen - mean - 1.0) / z if seen is not None and z > 0 else 0.0
        if spread <= 0:
            return 1.0 if mean + 1.0 <= best else 0.0
        return NormalDist(mean + 1.0, spread).cdf(best + 0.5)

    def meets(self, tokens_per_s: float, tpot_slo_s: float, num_decode: int = 1) -> bool:
        seen = self.seen_batch(tokens_per_s, num_decode)
        return seen is not None and seen <= self.batch_cap and self.step_s(seen) <= tpot_slo_s


def decode_model(
    cost: CostModel,
    shape: WorkloadShape,
    *,
    max_batch_size: int,
    tpot_quantile: float,
    stream_cv2: float = 1.0,
) -> DecodeModel:
    kv_cap = int(cost.kv_capacity_tokens // shape.peak_context_tokens())
    outputs = shape.output_tokens
    out_cs2 = float(outputs.var() / outputs.mean() ** 2) if outputs is not None else 0.0
    return DecodeModel(
        cost,
        shape.decode_context_tokens(),
        max(0, min(max_batch_size, kv_cap)),
        tpot_quantile,
        out_cs2,
        stream_cv2,
    )


def departure_cv2(model: PrefillModel, rate_rps: float, num_prefill: int) -> float:
    """Squared CV of the stream leaving prefill (Whitt's linking equation for G/G/c)."""
    c = num_prefill
    rho = min(rate_rps * model.mean_service_s / c, 1.0)
    return max(
        0.0,
        1.0
        + (1.0 - rho**2) * (model.arrival_cv2 - 1.0)
        + rho**2 * (model.cs2 - 1.0) / math.sqrt(c),
    )


def min_decode(model: DecodeModel, output_tokens_per_s: float, tpot_slo_s: float) -> int | None:
    """Smallest ``N_D`` meeting the TPOT SLO; ``None`` if none can."""
    if model.batch_cap < 1 or model.step_s(1.0) > tpot_slo_s:
        return None
    best = model.best_batch(tpot_slo_s)
    n = max(1, math.floor(output_tokens_per_s * model.step_s(best) / best))
    while n <= MAX_INSTANCES:
        if model.meets(output_tokens_per_s / n, tpot_slo_s, n):
            return n
        n += 1
    return None
