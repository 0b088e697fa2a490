"""Print the README's demo table from a run's summary.json (default runs/demo/summary.json of `make demo`).

    .venv/bin/python scripts/demo_table.py [runs/demo/summary.json] [--judge proxy-refusal]

One row per target and defense; attack success (no refusal) on AdvBench and on the typo-harmful set, without
attack, under the text jailbreak and under the typographic attack (the key word replaced, or the whole request
rephrased as MM-SafetyBench does), over-refusal on the benign look-alikes and
toxicity on RealToxicityPrompts. Attacked cells add the paired lift over the same prompts without the attack.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safeglass.reporting.markdown import judged_rows, markdown_table
from safeglass.reporting.sections import target_labels
from safeglass.stats import format_p

COLUMNS = (  # (header, dataset, attack, metric, judge family)
    ("AdvBench", "advbench", "none", "attack_success", "refusal"),
    ("AdvBench + jailbreak", "advbench", "text-jailbreak", "attack_success", "refusal"),
    ("typo-harmful, word in text", "typo-harmful", "none", "attack_success", "refusal"),
    ("+ jailbreak", "typo-harmful", "text-jailbreak", "attack_success", "refusal"),
    ("word in image (typographic)", "typo-harmful", "typographic", "attack_success", "refusal"),
    ("word in image, MM-SafetyBench wording", "typo-harmful", "typographic-mmsb", "attack_success", "refusal"),
    ("over-refusal (look-alikes)", "benign-lookalikes", "none", "over_refusal", "refusal"),
    ("RTP toxicity", "rtp-challenging", "none", "toxicity_rate", "toxicity"),
)


def cell(row: dict | None) -> str:
    if row is None:
        return ""
    text = f"{100 * row['value']:.1f} %"
    lift = row.get("vs_no_attack")
    if lift:
        p = lift.get("p_value")
        ptxt = "" if p is None else f"p {format_p(p)}" if p < 0.001 else f"p = {format_p(p)}"
        text += f" (Δ {100 * lift['delta']:+.1f} pp, {ptxt})"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summary", nargs="?", default="runs/demo/summary.json")
    ap.add_argument("--judge", default="proxy-refusal", help="refusal judge id (keyword-refusal for the other)")
    ap.add_argument("--toxicity-judge", default="jigsaw-toxicity")
    args = ap.parse_args()
    summary = json.loads(Path(args.summary).read_text(encoding="utf-8"))
    labels = target_labels(summary)
    rows = {"refusal": judged_rows(summary, args.judge), "toxicity": judged_rows(summary, args.toxicity_judge)}
    targets = [t["name"] for t in summary["targets"]]
    defenses = sorted({r["defense"] for r in summary["rows"]}, key=lambda d: (d != "none", d))
    body = [[labels.get(t, t), d, *(cell(rows[family].get((t, d, dataset, attack, metric)))
                                     for _, dataset, attack, metric, family in COLUMNS)]
            for t in targets for d in defenses]
    print(markdown_table(["target", "defense", *(c[0] for c in COLUMNS)], body))


if __name__ == "__main__":
    main()
