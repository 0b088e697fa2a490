"""The continual-learning report: OUT/continual-report.md and .html beside a run's or a sweep's JSON, with its
tables (average accuracy with intervals over seeds, the damage, the mitigation; or a run's per-strategy metrics) and
the plots it wrote (sweep curves, accuracy-matrix heat maps, the memory's synthetic share)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safeglass.reporting.pages import Part, write_pages

REPORT_STEM = "continual-report"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _pictures(result: dict[str, Any]) -> list[tuple[Path, str]]:
    return [(Path(path), name) for name, path in result.get("plots", {}).items() if Path(path).is_file()]


def sweep_parts(result: dict[str, Any]) -> list[Part]:
    ratios = [f"{r:g}" for r in result["ratios"]]
    rows = []
    for s, per in result["table"].items():
        cells = [per[r]["average_accuracy"] for r in ratios]
        rows.append([s, *(f"{_pct(a['mean'])} [{_pct(a['ci_low'])}, {_pct(a['ci_high'])}]" for a in cells)])
    mitigation = [[s, _pct(m.get("recovered_at_0.5")) + " %", f"{m.get('lost_points_at_0.5', 0):.1f}",
                   f"{m['cost_points_vs_best_at_lowest_ratio']:.1f}"] for s, m in result["mitigation"].items()]
    prov = [f"{result['name']}: {len(result['strategies'])} strategies x {len(ratios)} contamination ratios x "
            f"{len(result['seeds'])} seeds (seeds {result['seeds']}); config hash {result['config']['hash']}."]
    return [Part("Average accuracy (%) by contamination, mean [95 % interval] over seeds",
                 [(["strategy", *(f"{float(r) * 100:g} % synthetic" for r in ratios)], rows)], prov),
            Part("The mitigation: share of the loss recovered at 50 %, cost on the cleanest stream",
                 [(["strategy", "recovered", "points lost by its base at 0.5", "points below the best at the lowest "
                   "ratio"], mitigation)]),
            Part("Plots", pictures=_pictures(result))]


def run_parts(result: dict[str, Any]) -> list[Part]:
    rows = [[s, _pct(c["average_accuracy"]), _pct(c["average_forgetting"]), _pct(c["backward_transfer"])]
            for s, c in result["cells"].items()]
    return [Part(f"Contamination {result['ratio']:g}, seed {result['seed']}",
                 [(["strategy", "average accuracy (%)", "forgetting (points)", "backward transfer (points)"], rows)],
                 [f"{result['name']}; config hash {result['config']['hash']}."]),
            Part("Plots", pictures=_pictures(result))]


def write_report(result: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write the report pages of a `continual run` or `continual sweep` result into `out`; returns their paths."""
    out = Path(out)
    parts = sweep_parts(result) if result["kind"] == "continual sweep" else run_parts(result)
    return write_pages(parts, out, f"safeglass continual learning under synthetic contamination: {result['name']}",
                       REPORT_STEM)
