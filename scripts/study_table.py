"""Print a defense study's tables as Markdown (docs/defenses.md and the README) from its study.json.

    .venv/bin/python scripts/study_table.py runs/defense-study [--selector]

The study table: per target and configuration, attack success per attack class (k/n), benign over-refusal and
the cost a reply (target calls, tokens, seconds). With --selector: the adaptive selector beside every fixed
configuration on the selector's evaluation split, and whether it dominates each.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from safeglass.reporting.markdown import markdown_table


def pct(r: dict[str, Any] | None, *, interval: bool = False) -> str:
    if not r or r.get("rate") is None:
        return ""
    text = f"{100 * r['rate']:.1f} % ({r['k']}/{r['n']})"
    if interval:
        text += f" [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"
    return text


def study_table(data: dict[str, Any]) -> str:
    labels = {t["id"]: t["label"] + (" (organism)" if t.get("organism") else "") for t in data["targets"]}
    classes = data["attack_classes"]
    cells = {(r["target"], r["configuration"], r["attack_class"]): r["attack_success"] for r in data["class_rows"]
             if r["category"] is None}
    over = {(r["target"], r["configuration"]): r["over_refusal"] for r in data["over_refusal"]}
    # the cost of a configuration over all its replies (attack None), not per attack
    costs = {(r["target"], r["configuration"]): r for r in data["costs"] if r.get("attack") is None}
    front = data.get("pareto_front") or {}
    body = []
    for t in labels:
        for c in data["configurations"]:
            cost = costs.get((t, c))
            body.append([labels[t], c + (" *" if c in front.get(t, ()) else ""),
                         *[pct(cells.get((t, c, k))) for k in classes], pct(over.get((t, c))),
                         "" if cost is None else f"{cost['calls']:.2f}",
                         "" if cost is None else f"{cost['tokens']:.0f}",
                         "" if cost is None else f"{cost['seconds']:.2f}"])
    head = ["target", "configuration", *[f"{k}: attack success" for k in classes], "over-refusal",
            "calls a reply", "tokens a reply", "seconds a reply"]
    return markdown_table(head, body)


def selector_table(data: dict[str, Any]) -> str:
    labels = {t["id"]: t["label"] for t in data["targets"]}
    body = []
    for t, s in (data.get("selector") or {}).items():
        ev = s["evaluation"]
        body.append([labels.get(t, t), "adaptive (selector)", pct(ev["selector"]["attack_success"], interval=True),
                     pct(ev["selector"]["over_refusal"], interval=True), ""])
        for c, f in ev["fixed"].items():
            body.append([labels.get(t, t), c, pct(f["attack_success"], interval=True),
                         pct(f["over_refusal"], interval=True), "yes" if f["dominates"] else "no"])
    return markdown_table(["target", "configuration", "attack success (evaluation split)",
                           "over-refusal (evaluation split)", "selector dominates it"], body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", help="the study's output folder (or its study.json)")
    ap.add_argument("--selector", action="store_true", help="also the selector against the fixed configurations")
    args = ap.parse_args()
    path = Path(args.study)
    data = json.loads((path / "study.json" if path.is_dir() else path).read_text(encoding="utf-8"))
    print(study_table(data))
    if args.selector:
        print()
        print(selector_table(data))


if __name__ == "__main__":
    main()
