"""Pack ServeGen's DeepSeek-R1 data (``data/reason/deepseek-r1``) into the product.

Developers only; the product reads the packed copy. Reads a directory in ServeGen's layout
(73 x ``chunk-<id>-trace.csv`` + ``chunk-<id>-dataset.json``), validates it with the product's
own reader, and writes ``src/tandem/workload/data/servegen_r1/servegen_r1.json.gz`` (reproducible
bytes: gzip without a timestamp), the license beside it, and a README saying what was changed.

    .venv/bin/python scripts/pack_servegen.py [SOURCE_DIR]

SOURCE_DIR defaults to ../shared/data/servegen_deepseek_r1 (next to the repository).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from tandem.workload.servegen import (
    LENGTH_FIELDS,
    RATIO_FIELD,
    ServeGenData,
    packed_document,
    read_servegen,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEST = REPO_ROOT / "src" / "tandem" / "workload" / "data" / "servegen_r1"
SOURCE = {
    "repo": "https://github.com/alibaba/ServeGen",
    "commit": "f891d1189eb32b3868dfc443800c4150548c282a",
    "path": "data/reason/deepseek-r1",
    "license": "Apache-2.0",
    "paper": "Xiang et al., ServeGen: Workload Characterization and Generation of Large Language "
    "Model Serving in Production, arXiv 2505.09999",
}


def _aggregate(data: ServeGenData, field: str) -> tuple[float, dict[str, float]]:
    """Mean and percentiles of ``field`` over the day, each window weighted by its requests."""
    weight: dict[float, float] = {}
    for c in data.clients.values():
        for w in c.windows:
            pdfs = c.pdfs_at(w.start_s)
            assert pdfs is not None
            for v, p in zip(pdfs[field].values.tolist(), pdfs[field].probs.tolist(), strict=True):
                weight[v] = weight.get(v, 0.0) + p * w.rate_req_per_s * data.window_s
    values = np.array(sorted(weight))
    probs = np.array([weight[v] for v in values.tolist()])
    cdf = np.cumsum(probs) / probs.sum()
    pct = {f"p{q}": float(values[np.searchsorted(cdf, q / 100)]) for q in (10, 50, 90, 99)}
    return float(np.dot(values, probs) / probs.sum()), pct


def _readme(data: ServeGenData, packed: Path) -> str:
    num_requests = sum(
        w.rate_req_per_s * data.window_s for c in data.clients.values() for w in c.windows
    )
    num_windows = sum(len(c.windows) for c in data.clients.values())
    lines = []
    for field in (*LENGTH_FIELDS, RATIO_FIELD):
        mean, pct = _aggregate(data, field)
        fmt = "{:.2f}" if field == RATIO_FIELD else "{:.0f}"
        lines.append(
            f"  - {field}: mean {fmt.format(mean)}, "
            + ", ".join(f"{k} {fmt.format(v)}" for k, v in pct.items())
        )
    digest = hashlib.sha256(packed.read_bytes()).hexdigest()[:16]
    return f"""# ServeGen DeepSeek-R1 reasoning workload (embedded as `servegen-r1`)

- Source: {SOURCE["repo"]}, commit {SOURCE["commit"]}, path `{SOURCE["path"]}`
  (73 clients: `chunk-<id>-trace.csv` and `chunk-<id>-dataset.json` each).
- License: Apache-2.0 (`LICENSE-APACHE.txt`, copied from the repository).
- Attribution: {SOURCE["paper"]}. Data published by Alibaba (Model Studio / Bailian).
- What it is: not a request trace but a per-client statistical description of one day: per
  10-min window the request rate, the inter-arrival CV and a fitted Gamma/Weibull (shape,
  scale); per 6-h window the PDFs of input tokens, output tokens (reasoning included) and
  reasoning ratio. `tandem.workload.servegen` samples request streams from it; see
  `docs/workloads_servegen.md`.

## Changes (`scripts/pack_servegen.py`)

All files were read and validated by `tandem.workload.servegen`, then written as one gzipped
JSON document `servegen_r1.json.gz` (format `tandem-servegen/1`, sha256[:16] `{digest}`):

- Trace rows: only active windows are kept (idle rows, with an empty pattern, are implied by
  their absence), as columns `start_s, rate_req_per_s, cv, pattern, shape (arg1), scale (arg2)`;
  values unchanged.
- PDFs: the Python-dict strings are parsed into sorted `values` / `probs` arrays; entries of
  probability 0 are dropped (they are never sampled; most `reason_ratio` bins are 0), and
  probabilities and ratio values are rounded to 8 significant digits (renormalised when read).
- 6-h windows whose PDFs are empty are dropped; ServeGen skips them too, falling back to the
  client's previous window.

## Contents

- {len(data.clients)} clients, {data.num_windows} windows of {data.window_s:g} s,
  {num_windows} active client-windows, {num_requests:,.0f} requests in the day.
- Day aggregates (each window's PDF weighted by its request count):
{chr(10).join(lines)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source",
        nargs="?",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data" / "servegen_deepseek_r1",
    )
    args = parser.parse_args()
    data = read_servegen(args.source)
    DEST.mkdir(parents=True, exist_ok=True)
    packed = DEST / "servegen_r1.json.gz"
    text = json.dumps(packed_document(data, SOURCE), separators=(",", ":"))
    with (
        packed.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as gz,
    ):
        gz.write(text.encode("utf-8"))
    shutil.copyfile(args.source / "LICENSE-APACHE.txt", DEST / "LICENSE-APACHE.txt")
    (DEST / "README.md").write_text(_readme(read_servegen(packed), packed), encoding="utf-8")
    print(f"wrote {packed} ({packed.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
