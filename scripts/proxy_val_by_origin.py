"""Accuracy of any proxy heads on the current build's validation split, by origin.

    HF_HUB_OFFLINE=1 python scripts/proxy_val_by_origin.py [--weights DIR] [--examples FILE]

FILE defaults to runs/proxy_build/val_scores.jsonl (written by scripts/build_proxy_judge.py). Heads
of an older version need that version's code as well, from a worktree, for instance v1 (pair-v3):
    git worktree add /tmp/proxy-v1 3a941cc
    PYTHONPATH=/tmp/proxy-v1/src python scripts/proxy_val_by_origin.py \
        --weights /tmp/proxy-v1/src/safeglass/judges/proxy_weights
The split is by prompt hash, so heads of every version are scored on prompts none of them trained on.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def origin(o: str) -> str:
    return ":".join(o.split(":")[:2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="heads folder (default: the shipped ones)")
    ap.add_argument("--examples", default="runs/proxy_build/val_scores.jsonl")
    args = ap.parse_args()
    from safeglass.judges.base import JudgeInput
    from safeglass.judges.proxy import MiniLMEmbedder, ProxyJudge

    rows = [json.loads(line) for line in Path(args.examples).read_text(encoding="utf-8").splitlines() if line]
    kw = {"embedder": MiniLMEmbedder(), **({"weights": args.weights} if args.weights else {})}
    items = [JudgeInput(r["prompt"], r["response"]) for r in rows]
    refusal = ProxyJudge("refusal", **kw).judge(items)
    harm = ProxyJudge("harm", **kw).judge(items)
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r, a, b in zip(rows, refusal, harm, strict=True):
        for key in (origin(r["origin"]), "all"):
            acc[key][0] += 1
            acc[key][1] += a.flag == bool(r["refusal"])
            acc[key][2] += b.flag == bool(r["harm"])
    print("| origin | n | refusal acc. | harm acc. |\n| --- | --- | --- | --- |")
    for key, (n, ra, ha) in sorted(acc.items()):
        print(f"| {key} | {n} | {ra / n:.3f} | {ha / n:.3f} |")


if __name__ == "__main__":
    main()
