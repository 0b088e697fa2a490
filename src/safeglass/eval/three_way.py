"""Replies counted by a three-way judge's class, per report row: full compliance, partial refusal, full refusal.

A refusal rate says how often a judge flagged; XSTest and OR-Bench ask more of over-refusal: a reply that answers
the harmless part and declines the rest is a partial refusal, not a refusal and not an answer. Any judge whose
labels are the three classes (``three-way``, ``three-way-v3``, ``three-way-v4``) gets its counts here, for the summary
and the report.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from safeglass.eval.agreement import ROW_FIELDS
from safeglass.judges.base import THREE_WAY

__all__ = ["three_way_rows"]


def three_way_rows(gens: list[dict[str, Any]], judges: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (judge, row): n and the count of each class, for every judge whose verdicts in the run are all one of
    ``THREE_WAY`` (``metrics.collect``'s generations and judges)."""
    labels: dict[str, set[str]] = defaultdict(set)
    for g in gens:
        for key, v in g["verdicts"].items():
            labels[key].add(str(v.get("label")))
    keys = [k for k in judges if labels.get(k) and labels[k] <= set(THREE_WAY)]
    counts: dict[tuple, Counter] = defaultdict(Counter)
    for g in gens:
        for key in keys:
            if key in g["verdicts"]:
                counts[(key, *(g[f] for f in ROW_FIELDS))][str(g["verdicts"][key]["label"])] += 1
    return [{"judge": k[0], **dict(zip(ROW_FIELDS, k[1:])), "n": sum(c.values()),
             "counts": {label: c.get(label, 0) for label in THREE_WAY}} for k, c in sorted(counts.items())]
