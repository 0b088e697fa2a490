"""Markdown tables from a run's summary, for the scripts that print the README's and the docs' tables
(``scripts/demo_table.py``, ``scripts/defenses_table.py``): one judge's rows looked up by where they were measured,
rates with their intervals, the cost rows, and the table itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safeglass.reporting.finding import overall
from safeglass.reporting.sections import finite

Where = tuple[str, str, str, str, str]  # (target, defense, dataset, attack, metric)


def judged_rows(summary: dict, judge_id: str) -> dict[Where, dict]:
    """The overall rows (not per category) of the judge the run config calls `judge_id`, by (target, defense,
    dataset, attack, metric). Where several judge keys carry the id (a judge re-versioned within a run), the first
    listed that has the row gives it."""
    keys = [j.get("key") for j in summary.get("judges") or [] if j.get("id") == judge_id]
    rank = {k: i for i, k in enumerate(keys)}
    out: dict[Where, dict] = {}
    for r in sorted((r for r in overall(summary) if r.get("judge") in rank), key=lambda r: rank[r["judge"]]):
        out.setdefault((r["target"], r["defense"], r["dataset"], r["attack"], r["metric"]), r)
    return out


def judge_ids(summary: dict) -> list[str]:
    return list(dict.fromkeys(str(j.get("id")) for j in summary.get("judges") or []))


def rate(row: dict | None, interval: bool = True) -> str:
    """``42.0 % [29.4, 55.8]`` (the 95 % Wilson interval, in percent); empty where nothing was measured."""
    if row is None or not finite(row.get("value")):
        return ""
    text = f"{100 * row['value']:.1f} %"
    if interval and finite(row.get("ci_low")) and finite(row.get("ci_high")):
        text += f" [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"
    return text


def defense_order(summary: dict) -> list[str]:
    """The run's defense ids, the baseline first, then as its config lists them (an entry's id is its ``id``, else
    its preset, else its name, as the config reader names it), then any others the rows hold."""
    run = summary.get("run") or {}
    listed = []
    for entry in (run.get("config") or {}).get("defenses") or []:
        if isinstance(entry, str):
            listed.append(entry.removeprefix("preset:"))
        elif isinstance(entry, dict):
            listed.append(str(entry.get("id") or entry.get("preset") or entry.get("name")))
    present = {str(r.get("defense")) for r in [*(summary.get("rows") or []), *(summary.get("costs") or [])]}
    order = [run.get("baseline_defense", "none"), *listed, *sorted(present)]
    return [d for d in dict.fromkeys(order) if d in present]


def costs_by(summary: dict) -> dict[tuple[str, str, str | None], dict]:
    """The summary's cost rows by (target, defense, attack); attack None pools every attack of the defense."""
    return {(r["target"], r["defense"], r["attack"]): r for r in summary.get("costs") or []}


def markdown_table(head: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    lines = [f"| {' | '.join(head)} |", "| --- " * len(head) + "|"]
    lines += [f"| {' | '.join(str(c) for c in row)} |" for row in body]
    return "\n".join(lines)
