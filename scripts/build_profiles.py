"""Build the shipped cost-model profiles (``src/tandem/perf/profiles/*.json``) from raw data.

Usage::

    .venv/bin/python scripts/build_profiles.py [--data /work/shared/data] [--out DIR]

Reads (see each folder's README.md under the data directory):

- ``vidur_profiling/compute/<gpu>/<org>/<model>/mlp.csv``: per-layer linear and element-wise ops;
- ``aiconfigurator_perfdb/<gpu>_sxm/``: context/generation attention, GEMM and NCCL tables;
- ``splitwise_sim_perf_model/perf_model.csv``: measured whole-iteration times (Llama-2-70B,
  BLOOM-176B on A100/H100);
- ``distserve_profile/profiler-a100-80g.distserve.json``: DistServe's fitted coefficients.

How each kind of profile is made (details in docs/perf_model.md):

1. Operator sum: an iteration's time is the sum of its measured kernels (projections and
   element-wise ops from Vidur where it profiled the model, else aiconfigurator GEMMs plus a
   bandwidth estimate; attention and all-reduce from aiconfigurator).
2. Form: prefill ``a + b*sum(L) + c*sum(L^2)`` and decode ``d + e*B + f*sum(ctx)`` are fitted to
   operator sums on a grid of batches (non-negative, relative error), with every third grid
   shape held out to judge the fit.
3. Correction: where whole iterations were measured (SplitwiseSim), ``measured = k * form + o``
   per phase is fitted on two thirds of the measured configurations; the remaining third is
   stored in the profile as held-out points. Measured models without operator data (BLOOM) fit
   the form to the measurements directly.
4. DistServe profiles carry DistServe's coefficients (its raw points are not published).
5. Roofline profiles carry only model x hardware x TP (``RooflineCostModel``).

pandas and pyarrow are needed here only (dev extra); the package never reads the raw data.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tandem.perf.fitting import abs_pct_errors, fit_nonneg_relative
from tandem.perf.instance import InstanceSpec
from tandem.perf.profile_file import PROFILE_FORMAT, build_cost_model, parse_profile
from tandem.perf.specs import ModelSpec, get_hardware, get_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "src" / "tandem" / "perf" / "profiles"

AIC_SYSTEMS = {
    # hardware: (folder, vllm version, nccl version, ctx kernel, gen kernel, gemm kernel)
    "a100": ("a100_sxm", "0.14.0", "2.27.3", "vllm_flash_attn", "vllm_flash_attn", "vllm_default"),
    "h100": (
        "h100_sxm",
        "0.24.0",
        "2.29.2",
        "vllm_flash_attn_fa3",
        "vllm_flash_attn_fa3",
        "torch.nn.functional.linear",
    ),
    "h200": (
        "h200_sxm",
        "0.24.0",
        "2.29.2",
        "vllm_flash_attn_fa3",
        "vllm_flash_attn_fa3",
        "torch.nn.functional.linear",
    ),
    "b200": (
        "b200_sxm",
        "0.24.0",
        "2.29.2",
        "vllm_flashinfer_trtllmprefill",
        "vllm_flashinfer_trtllmdecode",
        "torch.nn.functional.linear",
    ),
}
VIDUR_MODELS = {
    "llama2-7b": "meta-llama/Llama-2-7b-hf",
    "llama2-70b": "meta-llama/Llama-2-70b-hf",
    "codellama-34b": "codellama/CodeLlama-34b-Instruct-hf",
    "llama3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama3-70b": "meta-llama/Meta-Llama-3-70B",
}
VIDUR_OPS = (
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)


# --------------------------------------------------------------------------------------------
# Interpolation on measured grids (log-log, power-law beyond the ends)
# --------------------------------------------------------------------------------------------


def loglog(xs: np.ndarray, ys: np.ndarray, x: float) -> float:
    """Piecewise-linear in log-log; beyond the grid, the end segment's power law, its exponent
    clipped to [0, 2] (time never falls with size, and grows at most quadratically)."""
    lx, ly, q = np.log(xs), np.log(ys), np.log(x)
    if len(xs) == 1:
        return float(ys[0])
    if q < lx[0] or q > lx[-1]:
        i = 0 if q < lx[0] else len(xs) - 2
        p = float(np.clip((ly[i + 1] - ly[i]) / (lx[i + 1] - lx[i]), 0.0, 2.0))
        end = 0 if q < lx[0] else len(xs) - 1
        return float(np.exp(ly[end] + p * (q - lx[end])))
    return float(np.exp(np.interp(q, lx, ly)))


def grid2(table: pd.DataFrame, row: str, col: str, r: float, c: float) -> float:
    """Latency at (r, c) from rows/cols of a long table: log-log in ``col`` within the two
    bracketing ``row`` values, then log-log across them."""
    rows = np.array(sorted(table[row].unique()), dtype=float)
    lo = rows[rows <= r].max() if (rows <= r).any() else rows[0]
    hi = rows[rows >= r].min() if (rows >= r).any() else rows[-1]
    picks = sorted({lo, hi}) if lo != hi else [lo]
    if len(picks) == 1 and r != lo:  # outside: take the two nearest rows
        idx = np.argsort(np.abs(np.log(rows) - np.log(r)))[:2]
        picks = sorted(rows[idx])
    vals = []
    for rv in picks:
        sub = table[table[row] == rv].sort_values(col)
        vals.append(loglog(sub[col].to_numpy(float), sub["latency"].to_numpy(float), c))
    return loglog(np.array(picks), np.array(vals), r)


def _bracket(grid: np.ndarray, v: float) -> list[float]:
    """The grid values just below and just above ``v`` (one value if ``v`` is on the grid)."""
    below, above = grid[grid <= v], grid[grid >= v]
    lo = below.max() if len(below) else grid[0]
    hi = above.min() if len(above) else grid[-1]
    return sorted({float(lo), float(hi)})


def _across(values: list[float], grid: list[float], v: float) -> float:
    if len(grid) == 1:
        return values[0] * v / grid[0]  # beyond the grid: latency proportional to size
    return loglog(np.array(grid), np.array(values), v)


# --------------------------------------------------------------------------------------------
# Raw tables
# --------------------------------------------------------------------------------------------


@dataclass
class AicTables:
    """aiconfigurator kernel tables of one GPU (latency in ms per kernel call, one GPU)."""

    gemm: pd.DataFrame
    context: pd.DataFrame
    generation: pd.DataFrame
    all_reduce: pd.DataFrame

    @classmethod
    def read(cls, data: Path, hardware: str) -> AicTables:
        folder, vllm, nccl, ctx_k, gen_k, gemm_k = AIC_SYSTEMS[hardware]
        root = data / "aiconfigurator_perfdb" / folder
        att = root / "attention" / "vllm" / vllm

        def attention(name: str, kernel: str) -> pd.DataFrame:
            df = pd.read_parquet(att / f"{name}_attention_perf.parquet")
            keep = (df.kernel_source == kernel) & (df.kv_cache_dtype == "bfloat16")
            if "window_size" in df:
                keep &= df.window_size == 0
            return df[keep]

        gemm = pd.read_parquet(root / "gemm" / "vllm" / vllm / "gemm_perf.parquet")
        gemm = gemm[(gemm.gemm_dtype == "bfloat16") & (gemm.kernel_source == gemm_k)]
        comm = pd.read_parquet(root / "comm" / "nccl" / nccl / "nccl_perf.parquet")
        comm = comm[(comm.op_name == "all_reduce") & (comm.nccl_dtype == "half")]
        return cls(gemm, attention("context", ctx_k), attention("generation", gen_k), comm)

    def gemm_ms(self, m: float, n: int, k: int) -> float:
        """One [m, k] x [k, n] GEMM: log-log in m on each bracketing (n, k) grid point, then
        log-log across k and across n."""
        ns = _bracket(np.array(sorted(self.gemm.n.unique()), dtype=float), n)
        ks = _bracket(np.array(sorted(self.gemm.k.unique()), dtype=float), k)
        per_n = []
        for nv in ns:
            per_k = []
            for kv in ks:
                sub = self.gemm[(self.gemm.n == nv) & (self.gemm.k == kv)].sort_values("m")
                per_k.append(loglog(sub.m.to_numpy(float), sub.latency.to_numpy(float), m))
            per_n.append(_across(per_k, ks, k))
        return _across(per_n, ns, n)

    def attention_ms(self, phase: str, heads: int, kv_heads: int, batch: int, x: float) -> float:
        """Context (``x`` = prompt length) or generation (``x`` = context length) attention of
        one layer for ``batch`` sequences; head counts absent from the table are scaled from
        the nearest measured ones (compute ~ heads for context, bytes ~ KV heads for
        generation)."""
        table = self.context if phase == "context" else self.generation
        table = table[table.head_dim == 128]
        combos = set(zip(table.num_heads, table.num_key_value_heads, strict=True))
        kv_avail = sorted({kv for _, kv in combos})
        kv_use = kv_heads if kv_heads in kv_avail else max(v for v in kv_avail if v <= kv_heads)
        heads_avail = sorted(h for h, kv in combos if kv == kv_use)
        h_use = min(heads_avail, key=lambda h: (abs(h - heads), -h))
        scale = heads / h_use if phase == "context" else kv_heads / kv_use
        sub = table[(table.num_heads == h_use) & (table.num_key_value_heads == kv_use)]
        if phase == "generation":
            sub = sub.assign(s=sub.step + sub.isl)
            return scale * grid2(sub.rename(columns={"s": "x"}), "batch_size", "x", batch, x)
        return scale * grid2(sub.rename(columns={"isl": "x"}), "batch_size", "x", batch, x)

    def all_reduce_ms(self, tp: int, elements: float) -> float:
        if tp == 1:
            return 0.0
        sub = self.all_reduce[self.all_reduce.num_gpus == tp].sort_values("message_size")
        return loglog(sub.message_size.to_numpy(float), sub.latency.to_numpy(float), elements)


@dataclass
class VidurLinear:
    """Vidur per-layer linear + element-wise ops (ms) and embedding, by tokens in the batch."""

    tokens: np.ndarray
    layer_ms: np.ndarray
    emb_ms: np.ndarray

    @classmethod
    def read(cls, data: Path, hardware: str, model: str, tp: int) -> VidurLinear | None:
        if model not in VIDUR_MODELS:
            return None
        path = data / "vidur_profiling" / "compute" / hardware / VIDUR_MODELS[model] / "mlp.csv"
        if not path.exists():
            return None
        df = pd.read_csv(path)
        df = df[df.num_tensor_parallel_workers == tp].sort_values("num_tokens")
        layer = sum(df[f"time_stats.{op}.median"] for op in VIDUR_OPS)
        return cls(
            df.num_tokens.to_numpy(float),
            np.asarray(layer, float),
            df["time_stats.emb.median"].to_numpy(float),
        )

    def at(self, num_tokens: float) -> tuple[float, float]:
        """(per-layer ms, embedding ms); beyond the grid, proportional to tokens."""
        if num_tokens > self.tokens[-1]:
            f = num_tokens / self.tokens[-1]
            return float(self.layer_ms[-1] * f), float(self.emb_ms[-1] * f)
        # Vidur's single runs are noisy; the running max keeps more tokens never faster.
        layer = np.maximum.accumulate(self.layer_ms)
        emb = np.maximum.accumulate(self.emb_ms)
        return (
            float(np.interp(num_tokens, self.tokens, layer)),
            float(np.interp(num_tokens, self.tokens, emb)),
        )


# --------------------------------------------------------------------------------------------
# Operator sum of one iteration
# --------------------------------------------------------------------------------------------


@dataclass
class OperatorSum:
    """Whole-iteration time (ms) as the sum of measured kernels, for one instance."""

    model: ModelSpec
    hardware: str
    tp: int
    aic: AicTables
    vidur: VidurLinear | None

    @property
    def linear_source(self) -> str:
        return "vidur" if self.vidur is not None else "aiconfigurator GEMM"

    def _layer_linear_ms(self, n: float) -> float:
        if self.vidur is not None:
            return self.vidur.at(n)[0]
        m, tp = self.model, self.tp
        q = m.num_attention_heads * m.head_dim // tp
        kv = 2 * m.num_kv_heads * m.head_dim // tp
        ffn = m.intermediate_size // tp
        up = 2 * ffn if m.gated_mlp else ffn
        gemms = (
            self.aic.gemm_ms(n, q + kv, m.hidden_size)
            + self.aic.gemm_ms(n, m.hidden_size, q)
            + self.aic.gemm_ms(n, up, m.hidden_size)
            + self.aic.gemm_ms(n, m.hidden_size, ffn)
        )
        # Element-wise ops (2 norms, activation, residual adds, rotary): bytes over 80% of HBM
        # bandwidth plus 3 us per kernel, aiconfigurator's empirical constants.
        hw = get_hardware(self.hardware)
        elem_bytes = n * m.dtype_bytes * (8 * m.hidden_size + 3 * ffn + 2 * (q + kv))
        elementwise = elem_bytes / (0.8 * hw.hbm_bandwidth_bytes_per_s) * 1e3 + 5 * 3e-3
        return gemms + elementwise

    def _common_ms(self, num_tokens: float, num_seqs: int) -> float:
        m = self.model
        emb = self.vidur.at(num_tokens)[1] if self.vidur is not None else 0.0
        lm_head = self.aic.gemm_ms(num_seqs, m.vocab_size // self.tp, m.hidden_size)
        all_reduce = 2 * self.aic.all_reduce_ms(self.tp, num_tokens * m.hidden_size)
        return emb + lm_head + m.num_layers * (self._layer_linear_ms(num_tokens) + all_reduce)

    def _attention_ms(self, phase: str, batch: int, length: float) -> float:
        m = self.model
        heads, kv_heads = m.num_attention_heads // self.tp, max(1, m.num_kv_heads // self.tp)
        return m.num_layers * self.aic.attention_ms(phase, heads, kv_heads, batch, length)

    def prefill_ms(self, batch: int, prompt_len: int) -> float:
        attention = self._attention_ms("context", batch, prompt_len)
        return self._common_ms(batch * prompt_len, batch) + attention

    def decode_ms(self, batch: int, context_len: float) -> float:
        return self._common_ms(batch, batch) + self._attention_ms("generation", batch, context_len)


# --------------------------------------------------------------------------------------------
# Forms and their fits
# --------------------------------------------------------------------------------------------


@dataclass
class Points:
    """Uniform prefill batches (``x`` = prompt length) or decode batches (``x`` = total
    context tokens) with their times in ms."""

    phase: str
    batch: np.ndarray
    x: np.ndarray
    ms: np.ndarray
    sweep: np.ndarray | None = None

    def subset(self, mask: np.ndarray) -> Points:
        sweep = None if self.sweep is None else self.sweep[mask]
        return Points(self.phase, self.batch[mask], self.x[mask], self.ms[mask], sweep)

    def features(self) -> np.ndarray:
        """Columns of ``a + b*sum(L) + c*sum(L^2)`` or of ``d + e*B + f*sum(ctx)``."""
        ones = np.ones(len(self.ms))
        if self.phase == "prefill":
            return np.column_stack([ones, self.batch * self.x, self.batch * self.x**2])
        return np.column_stack([ones, self.batch.astype(float), self.x])

    def segment_key(self) -> np.ndarray:
        """What selects a segment: tokens in the batch (prefill) or batch size (decode)."""
        return self.batch * self.x if self.phase == "prefill" else self.batch.astype(float)


#: A piecewise form: (segment start, coefficients in ms) sorted by start, first start 1.
Segments = list[tuple[int, np.ndarray]]


def predict(segments: Segments, pts: Points) -> np.ndarray:
    key, feats = pts.segment_key(), pts.features()
    out = np.zeros(len(pts.ms))
    for start, coef in segments:
        sel = key >= start
        out[sel] = feats[sel] @ coef
    return out


def _loss(segments: Segments, pts: Points) -> float:
    return float(np.sum(((predict(segments, pts) - pts.ms) / pts.ms) ** 2))


def _make_monotone(segments: Segments, phase: str) -> Segments | None:
    """Raise a later segment's base so the time never drops at its start; ``None`` if the
    per-context slope drops (decode), which no base can fix."""
    (s0, c0), (s1, c1) = segments
    c1 = c1.copy()
    if phase == "prefill":
        # Both ends of sum(L^2) at the knee: 0 and knee^2 (see FittedCostModel).
        deficit = max(
            c0[0] + c0[1] * s1 - c1[0] - c1[1] * s1,
            (c0[0] + c0[1] * s1 + c0[2] * s1**2) - (c1[0] + c1[1] * s1 + c1[2] * s1**2),
        )
    else:
        if c1[2] < c0[2]:
            return None
        deficit = (c0[0] + c0[1] * (s1 - 1)) - (c1[0] + c1[1] * s1)
    if deficit > 0:
        c1[0] += deficit
    return [(s0, c0), (s1, c1)]


def fit_segments(train: Points, allow_knee: bool = True) -> Segments:
    """The form fitted on ``train``; with one knee (two segments) when the best knee cuts the
    single-segment training loss by at least 30%, each side keeping at least 3 points
    (DistServe splits decode at a batch size the same way)."""
    single: Segments = [(1, fit_nonneg_relative(train.features(), train.ms))]
    best, best_loss = single, 0.7 * _loss(single, train)
    if not allow_knee:
        return single
    key = train.segment_key()
    for knee in sorted(set(key.tolist()))[1:]:
        lo = key < knee
        if lo.sum() < 3 or (~lo).sum() < 3:
            continue
        segs = [
            (1, fit_nonneg_relative(train.subset(lo).features(), train.ms[lo])),
            (int(knee), fit_nonneg_relative(train.subset(~lo).features(), train.ms[~lo])),
        ]
        fixed = _make_monotone(segs, train.phase)
        if fixed is None:
            continue
        loss = _loss(fixed, train)
        if loss < best_loss:
            best, best_loss = fixed, loss
    return best


def every_third(n: int) -> np.ndarray:
    """Held-out mask: points 1, 4, 7, ... of a sorted sweep, never its two ends."""
    mask = np.zeros(n, dtype=bool)
    mask[1 : n - 1 : 3] = True
    return mask


def grid_points(opsum: OperatorSum, phase: str, max_context: int) -> tuple[Points, np.ndarray]:
    """Operator sums on a grid of batch shapes that fit in the instance's KV cache, and the
    held-out mask (every third shape of each sweep)."""
    capacity = InstanceSpec(opsum.model, get_hardware(opsum.hardware), opsum.tp).kv_capacity_tokens
    batches, xs, ms, held = [], [], [], []
    if phase == "prefill":
        lens = [
            n
            for n in (
                16,
                32,
                64,
                128,
                256,
                384,
                512,
                768,
                1024,
                1536,
                2048,
                3072,
                4096,
                6144,
                8192,
                12288,
                16384,
            )
            if n <= max_context
        ]
        for b in (1, 2, 4, 8, 16):
            sweep = [n for n in lens if b * n <= min(16384, capacity)]
            for n in sweep:
                batches.append(b)
                xs.append(n)
                ms.append(opsum.prefill_ms(b, n))
            held.extend(every_third(len(sweep)))
    else:
        contexts = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
        for c in (c for c in contexts if c <= max_context):
            sweep = [
                b for b in (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256) if b * c <= capacity
            ]
            for b in sweep:
                batches.append(b)
                xs.append(b * c)
                ms.append(opsum.decode_ms(b, c))
            held.extend(every_third(len(sweep)))
    pts = Points(phase, np.array(batches), np.array(xs, float), np.array(ms))
    return pts, np.array(held, dtype=bool)


# --------------------------------------------------------------------------------------------
# SplitwiseSim measurements
# --------------------------------------------------------------------------------------------


def splitwise_points(data: Path, model: str, hardware: str, tp: int) -> dict[str, Points]:
    """Median measured iteration time per configuration, with each point's sweep:
    prefill 0 = prompt length at batch 1, 1 = batch size at 512 tokens; decode 0 = batch size
    (512-token prompts, 128 generated), 1 = generated length, 2 = prompt length (batch 1)."""
    df = pd.read_csv(data / "splitwise_sim_perf_model" / "perf_model.csv")
    name = {"a100": "a100-80gb", "h100": "h100-80gb"}[hardware]
    df = df[(df.model == model) & (df.hardware == name) & (df.tensor_parallel == tp)]
    pre = df.groupby(["batch_size", "prompt_size"]).prompt_time.median().reset_index()
    pre = pre.assign(sweep=(pre.batch_size > 1).astype(int))
    dec = df.groupby(["batch_size", "prompt_size", "token_size"]).token_time.median()
    dec = dec.reset_index()
    anchor = (dec.prompt_size == 512) & (dec.token_size == 128)
    dec = dec.assign(sweep=np.where(anchor, 0, np.where(dec.prompt_size == 512, 1, 2)))
    # Mean context over the generation of token_size tokens after a prompt_size prompt.
    dec = dec.assign(total_ctx=dec.batch_size * (dec.prompt_size + dec.token_size / 2.0))
    return {
        "prefill": Points(
            "prefill",
            pre.batch_size.to_numpy(),
            pre.prompt_size.to_numpy(float),
            pre.prompt_time.to_numpy(float),
            pre.sweep.to_numpy(),
        ),
        "decode": Points(
            "decode",
            dec.batch_size.to_numpy(),
            dec.total_ctx.to_numpy(float),
            dec.token_time.to_numpy(float),
            dec.sweep.to_numpy(),
        ),
    }


def splitwise_sweeps(pts: Points) -> list[np.ndarray]:
    """Index arrays of each sweep, sorted by work (tokens, then batch size, then context)."""
    if pts.sweep is None:
        raise ValueError("splitwise points carry their sweep")
    out = []
    for label in sorted(set(pts.sweep.tolist())):
        idx = np.flatnonzero(pts.sweep == label)
        order = np.lexsort((pts.x[idx], pts.segment_key()[idx]))
        out.append(idx[order])
    return out


def inconsistent(pts: Points) -> np.ndarray:
    """Configurations that took under 80% of the time of a smaller one in the same sweep:
    physically impossible, so a failed run (SplitwiseSim's TP2 prefill at batch 64 x 512
    reports 361 ms on H100 against 2,398 ms at batch 32)."""
    bad = np.zeros(len(pts.ms), dtype=bool)
    for idx in splitwise_sweeps(pts):
        running = 0.0
        for i in idx:
            if pts.ms[i] < 0.8 * running:
                bad[i] = True
            else:
                running = max(running, pts.ms[i])
    return bad


def splitwise_held_out(pts: Points) -> np.ndarray:
    """Every third configuration of each sweep, never a sweep's ends."""
    mask = np.zeros(len(pts.ms), dtype=bool)
    for idx in splitwise_sweeps(pts):
        mask[idx[every_third(len(idx))]] = True
    return mask


# --------------------------------------------------------------------------------------------
# Profile documents
# --------------------------------------------------------------------------------------------


def segments_doc(prefill: Segments, decode: Segments) -> dict:
    """Coefficients (ms in the fit) as the profile file's segments in seconds."""
    return {
        "prefill": _segments(
            prefill, "min_batch_tokens", ("base_s", "per_token_s", "per_token_sq_s")
        ),
        "decode": _segments(
            decode, "min_batch_size", ("base_s", "per_request_s", "per_context_token_s")
        ),
    }


def _segments(segments: Segments, start_key: str, names: tuple[str, str, str]) -> list[dict]:
    return [
        {start_key: int(start), **{name: float(c[i]) / 1e3 for i, name in enumerate(names)}}
        for start, c in segments
    ]


def points_doc(pts: Points) -> list[dict]:
    out = []
    for b, x, ms in zip(pts.batch, pts.x, pts.ms, strict=True):
        entry: dict = {"phase": pts.phase, "batch_size": int(b)}
        key = "prompt_len_tokens" if pts.phase == "prefill" else "total_context_tokens"
        entry[key] = int(round(float(x)))
        entry["measured_s"] = float(ms) / 1e3
        out.append(entry)
    return out


def base_doc(model: str, hardware: str, tp: int, kind: str, source: str, description: str) -> dict:
    return {
        "format": PROFILE_FORMAT,
        "name": f"{model}_{hardware}_tp{tp}",
        "kind": kind,
        "model": model,
        "hardware": hardware,
        "tensor_parallel": tp,
        "source": source,
        "description": description,
    }


@dataclass
class Scale:
    """Measured / operator-sum ratio per phase, and where it was measured."""

    prefill: float
    decode: float
    origin: str


def operator_profile(
    data: Path, model: str, hardware: str, tp: int, aic: AicTables, scale: Scale
) -> dict:
    """Form fitted to operator sums times the measured/operator-sum ratio of the same GPU."""
    spec = get_model(model)
    opsum = OperatorSum(spec, hardware, tp, aic, VidurLinear.read(data, hardware, model, tp))
    # aiconfigurator's generation tables reach 131,072 tokens of context: the decode grid goes
    # to the model's own limit (capped at 32,768, which covers servegen-r1's longest answers).
    max_context = min(spec.max_context_tokens, 32768)
    final: dict[str, Segments] = {}
    raw: dict[str, Segments] = {}
    held: list[dict] = []
    num_fit = 0
    for phase in ("prefill", "decode"):
        pts, mask = grid_points(opsum, phase, max_context)
        k = scale.prefill if phase == "prefill" else scale.decode
        scaled = Points(phase, pts.batch, pts.x, pts.ms * k)
        final[phase] = fit_segments(scaled.subset(~mask))
        raw[phase] = fit_segments(pts.subset(~mask))
        num_fit += int((~mask).sum())
        held += points_doc(scaled.subset(mask))
    source = "vidur+aiconfigurator" if opsum.vidur is not None else "aiconfigurator"
    doc = base_doc(
        model,
        hardware,
        tp,
        "fitted",
        source,
        f"{spec.hf_id} on {tp} x {hardware}: sums of measured kernels "
        f"({opsum.linear_source} projections, aiconfigurator attention and NCCL) "
        f"x measured/kernel-sum ratio of {scale.origin}",
    )
    doc["coefficients"] = segments_doc(final["prefill"], final["decode"])
    prefill_grid, _ = grid_points(opsum, "prefill", max_context)
    decode_grid, _ = grid_points(opsum, "decode", max_context)
    doc["measured_range"] = {
        "max_prompt_tokens": int(prefill_grid.x.max()),
        "max_prefill_batch_tokens": 16384,
        "max_decode_batch_size": 256,
        "max_context_tokens_per_request": int((decode_grid.x / decode_grid.batch).max()),
    }
    doc["fit"] = {
        "reference": "operator sums (x the stated scale) at batch shapes held out of the fit",
        "reference_kind": "operator_sum",
        "method": "form fitted to scaled operator sums",
        "num_fit_points": num_fit,
        "held_out": held,
        "uncorrected": segments_doc(raw["prefill"], raw["decode"]),
        "scale": {"prefill": scale.prefill, "decode": scale.decode, "origin": scale.origin},
    }
    return doc


def fit_fixed_context_slope(train: Points, slope_ms: float) -> Segments:
    """Decode ``d + e*B`` fitted (non-negative, relative error) to ``ms - slope * ctx``, with
    the per-context-token slope given: one segment."""
    y = train.ms
    target = (y - slope_ms * train.x) / y
    xw = np.column_stack([np.ones(len(y)), train.batch.astype(float)]) / y[:, None]
    best, best_loss = np.zeros(2), float(np.sum(target**2))
    for cols in ([0], [1], [0, 1]):
        coef, *_ = np.linalg.lstsq(xw[:, cols], target, rcond=None)
        if np.any(coef < 0):
            continue
        full = np.zeros(2)
        full[cols] = coef
        loss = float(np.sum((xw @ full - target) ** 2))
        if loss < best_loss:
            best, best_loss = full, loss
    return [(1, np.array([best[0], best[1], slope_ms]))]


def splitwise_profile(
    data: Path,
    model: str,
    hardware: str,
    tp: int,
    aic: AicTables | None,
    context_scale: float | None = None,
) -> tuple[dict, Scale | None]:
    """Form fitted directly to SplitwiseSim's measured iterations (two thirds of the
    configurations; the rest held out). With operator data (Llama-2-70B) the operator-sum
    form and the measured/operator-sum ratio are recorded too, and the decode context slope
    comes from the kernel sums: SplitwiseSim varied context only at batch 1 (576 to 4,608
    tokens), where attention is ~1% of a step and below the runs' noise, so a free fit returns
    noise (0 at H100 TP2, 3-5x the kernel slope elsewhere). The kernel slope is multiplied by
    ``context_scale`` (the GPU's TP2 decode ratio, as for the operator-sum profiles; this
    profile's own ratio when ``None``), so Llama-2-70B and Llama-3-70B, whose attention shapes
    are equal, get the same slope."""
    spec = get_model(model)
    measured = splitwise_points(data, model, hardware, tp)
    opsum = None
    if aic is not None:
        opsum = OperatorSum(spec, hardware, tp, aic, VidurLinear.read(data, hardware, model, tp))
    final: dict[str, Segments] = {}
    raw: dict[str, Segments] = {}
    ratio: dict[str, float] = {}
    held: list[dict] = []
    excluded: list[dict] = []
    num_fit = 0
    for phase in ("prefill", "decode"):
        pts = measured[phase]
        bad = inconsistent(pts)
        excluded += points_doc(pts.subset(bad))
        pts = pts.subset(~bad)
        mask = splitwise_held_out(pts)
        train = pts.subset(~mask)
        final[phase] = fit_segments(train)
        num_fit += len(train.ms)
        held += points_doc(pts.subset(mask))
        if opsum is not None:
            grid, _ = grid_points(opsum, phase, 8192)
            raw[phase] = fit_segments(grid)
            kernel = np.array(
                [
                    opsum.prefill_ms(int(b), int(x))
                    if phase == "prefill"
                    else opsum.decode_ms(int(b), x / b)
                    for b, x in zip(train.batch, train.x, strict=True)
                ]
            )
            ratio[phase] = float(np.median(train.ms / kernel))
            if phase == "decode":
                kernel_slope = float(fit_segments(grid, allow_knee=False)[0][1][2])
                k = context_scale if context_scale is not None else ratio["decode"]
                final[phase] = fit_fixed_context_slope(train, kernel_slope * k)
    source = "splitwise+vidur+aiconfigurator" if opsum is not None else "splitwise"
    doc = base_doc(
        model,
        hardware,
        tp,
        "fitted",
        source,
        f"{spec.hf_id} on {tp} x {hardware}: SplitwiseSim's measured iterations",
    )
    doc["coefficients"] = segments_doc(final["prefill"], final["decode"])
    dec = measured["decode"]
    doc["measured_range"] = {
        "max_prompt_tokens": int(measured["prefill"].x.max()),
        "max_prefill_batch_tokens": int(measured["prefill"].segment_key().max()),
        "max_decode_batch_size": int(dec.batch.max()),
        "max_context_tokens_per_request": int((dec.x / dec.batch).max()),
    }
    doc["fit"] = {
        "reference": "SplitwiseSim perf_model.csv: median measured iteration time per "
        "configuration; every third configuration of each sweep held out",
        "reference_kind": "whole_iteration",
        "method": "form fitted to measured iterations",
        "num_fit_points": num_fit,
        "held_out": held,
        "excluded": excluded,
        "uncorrected": segments_doc(raw["prefill"], raw["decode"]) if raw else None,
        "operator_sum_ratio": ratio or None,
    }
    if excluded:
        doc["notes"] = [
            f"{len(excluded)} configuration(s) excluded as inconsistent (less time "
            "than a smaller configuration of the same sweep); listed in fit.excluded"
        ]
    scale = (
        Scale(ratio["prefill"], ratio["decode"], f"{doc['name']} (SplitwiseSim)") if ratio else None
    )
    return doc, scale


#: DistServe's simulator adds ``2 + 1e-4 * sum(context tokens)`` ms to every prefill and decode
#: iteration (``Worker.add_ray_overhead`` in ``simdistserve/base/worker.py``, commit 82831f1):
#: in our column orders, (base, per request, per context token) for decode and (base, per token,
#: per token^2) for prefill.
DISTSERVE_ITERATION_MS = np.array([2.0, 0.0, 1e-4])
DISTSERVE_PREFILL_ITERATION_MS = np.array([2.0, 1e-4, 0.0])


def _distserve_decode(abc: list[float]) -> np.ndarray:
    """DistServe's decode fit ``a + b * sum(ctx + 1) + c * B`` as ``(a, c + b, b)`` in our
    column order, plus its worker's per-iteration cost."""
    a, b, c = abc
    return np.array([a, c + b, b]) + DISTSERVE_ITERATION_MS


def distserve_profiles(data: Path) -> list[dict]:
    """DistServe's fitted coefficients for OPT on A100 (its DistServe-engine file)."""
    path = data / "distserve_profile" / "profiler-a100-80g.distserve.json"
    table = json.loads(path.read_text())
    docs = []
    for hf_id, by_tp in table.items():
        model = hf_id.split("/")[-1].lower()
        for tp_str, c in sorted(by_tp.items(), key=lambda kv: int(kv[0])):
            tp = int(tp_str)
            if get_model(model).num_attention_heads % tp:
                continue
            threshold = int(c["decoding_large_small_bs_threshold"])
            # DistServe: a + b * sum(ctx + 1) + c * B  ->  (a, c + b, b) in our column order,
            # plus its worker's per-iteration cost (2 ms + 1e-4 ms per context token).
            small = _distserve_decode(c["decoding_smallbs"])
            large = _distserve_decode(c["decoding_largebs"])
            # Elementwise max: a bigger batch never steps faster at the threshold.
            large = np.maximum(large, small)
            doc = base_doc(
                model,
                "a100",
                tp,
                "fitted",
                "distserve",
                f"{hf_id} on {tp} x A100-80GB: DistServe's fitted coefficients (DistServe engine)",
            )
            # DistServe adds PP milliseconds to every prefill (1 ms at PP = 1), and its worker
            # the per-iteration cost (2 ms + 1e-4 ms per prompt token).
            prefill = (
                np.array(c["prefill"]) + np.array([1.0, 0.0, 0.0]) + DISTSERVE_PREFILL_ITERATION_MS
            )
            doc["coefficients"] = segments_doc([(1, prefill)], [(1, small), (threshold, large)])
            doc["measured_range"] = {"max_prompt_tokens": get_model(model).max_context_tokens}
            doc["notes"] = [
                "DistServe publishes fitted coefficients, not its measured points: no held-out "
                "error can be computed for this profile.",
                f"For batch >= {threshold} each coefficient is the larger of DistServe's two "
                "lines, so that a bigger batch is never faster per step.",
                "Includes DistServe's per-iteration cost (2 ms + 1e-4 ms per context token on "
                "every prefill and decode iteration, simdistserve Worker.add_ray_overhead).",
            ]
            docs.append(doc)
    return docs


ROOFLINE_INSTANCES = (
    ("llama2-7b", "b200", 1),
    ("llama3-8b", "b200", 1),
    ("qwen2.5-7b", "a100", 1),
    ("llama3-70b", "b200", 4),
    ("llama2-70b", "h200", 4),
    ("codellama-34b", "h200", 2),
    ("opt-13b", "h100", 1),
    ("opt-66b", "h100", 4),
    ("bloom-176b", "h200", 8),
)


def roofline_doc(model: str, hardware: str, tp: int) -> dict:
    spec = get_model(model)
    return base_doc(
        model,
        hardware,
        tp,
        "roofline",
        "roofline",
        f"{spec.hf_id} on {tp} x {hardware}: roofline with stated efficiencies",
    )


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def write(out: Path, doc: dict) -> None:
    build_cost_model(parse_profile(doc, doc["name"]))  # every shipped file must load
    (out / f"{doc['name']}.json").write_text(json.dumps(doc, indent=1) + "\n")


def summarize(doc: dict) -> str:
    model = build_cost_model(parse_profile(doc, doc["name"]))
    pts = (doc.get("fit") or {}).get("held_out", [])
    if not pts:
        return f"{doc['name']:24s} {doc['source']}"
    pred = []
    for p in pts:
        if p["phase"] == "prefill":
            pred.append(model.prefill_time_s([p["prompt_len_tokens"]] * p["batch_size"]))
        else:
            pred.append(model.decode_step_time_s(p["batch_size"], p["total_context_tokens"]))
    err = abs_pct_errors(pred, [p["measured_s"] for p in pts])
    return (
        f"{doc['name']:24s} {doc['source']:31s} held-out n={len(pts):3d} "
        f"mean {err.mean():5.1f}% max {err.max():5.1f}%"
    )


LICENSES = (
    ("vidur_profiling/LICENSE-MIT.txt", "LICENSE-MIT-vidur.txt"),
    ("splitwise_sim_perf_model/LICENSE-MIT.txt", "LICENSE-MIT-splitwise-sim.txt"),
    ("aiconfigurator_perfdb/LICENSE-APACHE.txt", "LICENSE-APACHE-2.0-aiconfigurator.txt"),
    ("distserve_profile/LICENSE-APACHE.txt", "LICENSE-APACHE-2.0-distserve.txt"),
)
#: Operator-sum profiles; each takes the measured/kernel-sum ratio of its GPU's TP2 Llama-2-70B
#: (H100's for H200 and B200, which SplitwiseSim did not measure).
OPERATOR_INSTANCES = (
    ("llama2-7b", "a100", 1),
    ("llama2-7b", "h100", 1),
    ("llama3-8b", "a100", 1),
    ("llama3-70b", "a100", 4),
    ("codellama-34b", "a100", 2),
    ("codellama-34b", "h100", 2),
    ("qwen2.5-7b", "h100", 1),
    ("qwen2.5-7b", "h200", 1),
    ("qwen2.5-7b", "b200", 1),
    ("llama3-8b", "h100", 1),
    ("llama3-8b", "h200", 1),
    ("llama3-70b", "h100", 4),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    data, out = args.data, args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    aic = {hw: AicTables.read(data, hw) for hw in AIC_SYSTEMS}
    docs: list[dict] = []
    scales: dict[str, Scale] = {}
    for hw in ("a100", "h100"):
        for tp in (2, 4, 8):
            tp2 = scales[hw].decode if hw in scales else None
            doc, scale = splitwise_profile(data, "llama2-70b", hw, tp, aic[hw], tp2)
            docs.append(doc)
            if tp == 2 and scale is not None:
                scales[hw] = scale
        docs.append(splitwise_profile(data, "bloom-176b", hw, 8, None)[0])
    for model, hw, tp in OPERATOR_INSTANCES:
        scale = scales["a100" if hw == "a100" else "h100"]
        docs.append(operator_profile(data, model, hw, tp, aic[hw], scale))
    docs += distserve_profiles(data)
    docs += [roofline_doc(*instance) for instance in ROOFLINE_INSTANCES]

    for doc in docs:
        write(out, doc)
        print(summarize(doc))
    licenses = out / "licenses"
    licenses.mkdir(exist_ok=True)
    for src, name in LICENSES:
        shutil.copyfile(data / src, licenses / name)
    print(f"wrote {len(docs)} profiles to {out}")


if __name__ == "__main__":
    main()
