"""Build an ``ErrorModel`` from a predictor's errors on the test requests (numpy only).

Grid (see ``error_model``): progress = prompt, then fraction generated in (0, .25], (.25, .5],
(.5, .75], (.75, 1); relative length = output length / median output length of the test
requests in [0, .75), [.75, 1.25), [1.25, inf). A cell with fewer than ``min_cell_samples``
samples takes the quantiles pooled over its progress row (and the row, if also too thin, those
pooled over all samples); the metadata lists such cells.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tandem.errors import ConfigError
from tandem.predict.error_model import ErrorModel
from tandem.predict.evaluate import SplitPredictions

PROGRESS_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0)
LENGTH_EDGES = (0.0, 0.75, 1.25, 1e9)
LEVELS = tuple(round(float(x), 4) for x in np.linspace(0.0, 1.0, 21))


def build_error_model(
    preds: SplitPredictions,
    predictor: str = "ares",
    source: dict[str, Any] | None = None,
    min_cell_samples: int = 30,
) -> ErrorModel:
    """Quantiles of ln((pred + 1) / (true + 1)) per cell of the relative grid."""
    if predictor not in preds.predictions:
        raise ConfigError(
            f"unknown predictor {predictor!r}; known: {', '.join(sorted(preds.predictions))}"
        )
    predicted = preds.predictions[predictor]
    error = np.log((predicted + 1.0) / (preds.remaining + 1.0))
    first = np.unique(preds.request_id, return_index=True)[1]
    scale = float(np.median(preds.total[first]))
    shell = ErrorModel(
        PROGRESS_EDGES,
        LENGTH_EDGES,
        LEVELS,
        np.zeros((len(PROGRESS_EDGES), len(LENGTH_EDGES) - 1, len(LEVELS))),
        scale,
        {},
    )
    progress, length = shell.cells_of(preds.generated, preds.remaining)
    table = np.zeros_like(shell.quantiles)
    counts = np.zeros(table.shape[:2], dtype=np.int64)
    pooled: list[list[int]] = []
    overall = np.quantile(error, LEVELS)
    for p in range(table.shape[0]):
        row_sel = progress == p
        row_q = (
            np.quantile(error[row_sel], LEVELS) if row_sel.sum() >= min_cell_samples else overall
        )
        for n in range(table.shape[1]):
            sel = row_sel & (length == n)
            counts[p, n] = int(sel.sum())
            if counts[p, n] >= min_cell_samples:
                table[p, n] = np.quantile(error[sel], LEVELS)
            else:
                table[p, n] = row_q
                pooled.append([p, n])
    metadata = {
        "predictor": predictor,
        "source": source or {},
        "num_samples": int(error.size),
        "num_requests": int(first.size),
        "mae_tokens": float(np.mean(np.abs(predicted - preds.remaining))),
        "mean_abs_log_ratio": float(np.mean(np.abs(error))),
        "cell_samples": counts.tolist(),
        "pooled_cells": pooled,
        "progress_bins": ["prompt (g = 0)", "(0, .25]", "(.25, .5]", "(.5, .75]", "(.75, 1)"],
        "length_bins": ["< .75 x median", ".75-1.25 x median", ">= 1.25 x median"],
        "note": "buckets are relative (fraction of output generated, length / median length) so "
        "the model transfers across output-length scales; call rescaled(median) for a "
        "workload whose median output length differs",
    }
    return ErrorModel(PROGRESS_EDGES, LENGTH_EDGES, LEVELS, table, scale, metadata)
