"""Fit report of the built-in cost-model profiles: error on measured points held out of each fit.

For every profile built from measurements: mean and max absolute percentage error of the
profile on held-out points (prefill and decode separately too). For the profiles fitted to
SplitwiseSim's measured whole iterations, also the error of the kernel sums alone (what the
operator profiles predict before any correction) and of the roofline model on the same points.

Last line: ``splitwise_mean_abs_pct_error=<x>`` (pooled over every held-out SplitwiseSim point).
Usage: ``python benchmarks/profile_fit.py``.
"""

from __future__ import annotations

from tandem.perf.fit_report import fit_report


def _fmt(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.1f}"


def main() -> None:
    report = fit_report()
    print(
        f"{'profile':24s} {'reference':16s} {'n':>3s} {'mean%':>6s} {'max%':>6s} "
        f"{'pre%':>6s} {'dec%':>6s} {'kern%':>6s} {'roof%':>6s}"
    )
    for p in report.profiles:
        print(
            f"{p.name:24s} {p.reference_kind:16s} {p.num_points:3d} "
            f"{p.mean_abs_pct_error:6.1f} {p.max_abs_pct_error:6.1f} "
            f"{_fmt(p.prefill_mean_abs_pct_error):>6s} {_fmt(p.decode_mean_abs_pct_error):>6s} "
            f"{_fmt(p.uncorrected_mean_abs_pct_error):>6s} "
            f"{_fmt(p.roofline_mean_abs_pct_error):>6s}"
        )
    whole = [p for p in report.profiles if p.reference_kind == "whole_iteration"]
    n = sum(p.num_points for p in whole)

    def pooled(attr: str) -> float:
        rows = [(getattr(p, attr), p.num_points) for p in whole if getattr(p, attr) is not None]
        return sum(v * k for v, k in rows) / sum(k for _, k in rows)

    print(
        f"SplitwiseSim held-out points: {n} over {len(whole)} profiles; pooled mean abs error: "
        f"fitted {pooled('mean_abs_pct_error'):.2f}%, "
        f"kernel sums alone (Llama-2-70B) {pooled('uncorrected_mean_abs_pct_error'):.1f}%, "
        f"roofline {pooled('roofline_mean_abs_pct_error'):.1f}%"
    )
    print(f"skipped (no held-out points): {len(report.skipped)}")
    print(f"splitwise_mean_abs_pct_error={report.splitwise_mean_abs_pct_error:.2f}")


if __name__ == "__main__":
    main()
