"""Print docs/defenses.md's table from a run: each defense beside the baseline, per target.

    .venv/bin/python scripts/defenses_table.py runs/defenses-table [--judge proxy-refusal]

(the run of `safeglass run configs/defenses-table.yaml --out runs/defenses-table`; RUN_DIR may also be its
summary.json). One row per target and defense: attack success on each harmful dataset and attack, and over-refusal
on each benign one, with 95 % Wilson intervals, under one judge; then what a reply cost (target calls, tokens, seconds:
the summary's `costs`, over every reply of that target and defense) and those three as multiples of the baseline
defense's on the same replies.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from safeglass.reporting.costs import ratio
from safeglass.reporting.markdown import (
    costs_by,
    defense_order,
    judge_ids,
    judged_rows,
    markdown_table,
    rate,
)
from safeglass.reporting.sections import target_labels

RATES = (("attack_success", "attack success"), ("over_refusal", "over-refusal"))  # (metric, header) in order


def columns(rows: dict) -> list[tuple[str, str, str, str]]:
    """(metric, dataset, attack, header) for every rate the judge measured: attack success first, then
    over-refusal; within each, by dataset, the unattacked prompts before each attack."""
    seen = {(metric, dataset, attack) for _, _, dataset, attack, metric in rows}
    out = []
    for metric, head in RATES:
        where = sorted({(d, a) for m, d, a in seen if m == metric}, key=lambda da: (da[0], da[1] != "none", da[1]))
        out += [(metric, d, a, f"{head}: {d}" + ("" if a == "none" else f" + {a}")) for d, a in where]
    return out


def table(summary: dict, judge: str) -> str:
    """The markdown table and a line saying what its cells are."""
    rows = judged_rows(summary, judge)
    if not rows:
        raise SystemExit(f"no rows judged by {judge!r} in this run; its judges: {', '.join(judge_ids(summary))}")
    baseline = (summary.get("run") or {}).get("baseline_defense", "none")
    costs = costs_by(summary)
    if not costs:
        raise SystemExit("this summary has no costs (written before they were counted): run `safeglass report RUN_DIR`"
                         " to write it again")
    cols = columns(rows)
    labels = target_labels(summary)
    body = []
    for t in [t["name"] for t in summary.get("targets") or []]:
        for d in defense_order(summary):
            cells = [rate(rows.get((t, d, dataset, attack, metric))) for metric, dataset, attack, _ in cols]
            cost = costs.get((t, d, None))
            if not any(cells) and cost is None:
                continue  # this defense never ran on this target
            vb = (cost or {}).get("vs_baseline")
            cells += ["", "", "", ""] if cost is None else [
                f"{cost['calls']:.2f}", f"{cost['tokens']:.0f}", f"{cost['seconds']:.2f}",
                " / ".join(ratio(vb.get(f)) for f in ("calls", "tokens", "seconds")) if vb else "—"]
            body.append([labels.get(t, t), d, *cells])
    head = ["target", "defense", *(c[3] for c in cols), "target calls a sample", "tokens a sample",
            "seconds a sample", f"× {baseline} (calls / tokens / seconds)"]
    note = (f"Judge: {judge}; rates with 95 % Wilson intervals. Cost: the mean over every reply of the target and "
            f"defense (all datasets and attacks), tokens prompt + completion over the defense's target calls, seconds "
            f"including the defense's own judge calls; × {baseline}: totals against {baseline}'s on the same replies.")
    return markdown_table(head, body) + "\n\n" + note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="the run directory (or its summary.json)")
    ap.add_argument("--judge", default="proxy-refusal", help="refusal judge id (keyword-refusal for the other)")
    args = ap.parse_args()
    path = Path(args.run)
    path = path / "summary.json" if path.is_dir() else path
    if not path.exists():
        sys.exit(f"{path}: no summary here; `safeglass report RUN_DIR` writes it")
    print(table(json.loads(path.read_text(encoding="utf-8")), args.judge))


if __name__ == "__main__":
    main()
