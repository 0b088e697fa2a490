"""Fitting and evaluating the adaptive selector offline (issue 31), on per-sample outcomes of fixed configurations.

A row is one attacked sample: ``{"sample_id", "kind": "harmful"|"benign", "attack_class", "signals": {id: bool},
"bad": {configuration: 0|1}}``, ``bad`` 1 where that configuration failed on it (a harmful request answered, a
benign one refused). The rows are split by sample id into a fitting and an evaluation part (both recorded in the
selector), the rule is fitted on the first and judged on the second against every fixed configuration.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safeglass.defenses.selector_rule import (
    FORMAT,
    VERSION,
    SelectorError,
    cell_key,
    choose,
    load_selector,
    signal_ids,
    validate_selector,
)
from safeglass.eval.metrics import paired_against
from safeglass.hashing import content_hash
from safeglass.stats import proportion

KINDS = ("harmful", "benign")

__all__ = ["split_rows", "fit_selector", "save_selector", "load_selector", "evaluate", "SelectorError"]


def _check_rows(rows: Sequence[dict[str, Any]], signals: list[str], configurations: Sequence[str]) -> None:
    for r in rows:
        sid = r.get("sample_id")
        if r.get("kind") not in KINDS:
            raise ValueError(f"selector row {sid}: kind must be harmful or benign, not {r.get('kind')!r}")
        missing = [s for s in signals if s not in (r.get("signals") or {})]
        missing += [c for c in configurations if c not in (r.get("bad") or {})]
        if missing:
            raise ValueError(f"selector row {sid}: no value for {', '.join(missing)}")


def split_rows(rows: Sequence[dict[str, Any]], fit_share: float = 0.5,
               seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(fit rows, evaluation rows), disjoint by sample id: every row of an id goes the same way, so a rule is never
    judged on a sample it was fitted on. Per (kind, attack class) of an id's first row, ids are ordered by a hash of
    (seed, id), so the split does not depend on row order, and each stratum of two or more ids has some on both
    sides."""
    strata: dict[tuple[str, str], list[str]] = {}
    placed: set[str] = set()
    for r in rows:
        sid = str(r["sample_id"])
        if sid not in placed:
            placed.add(sid)
            strata.setdefault((r["kind"], str(r.get("attack_class", ""))), []).append(sid)
    fit_ids: set[str] = set()
    for ids in strata.values():
        ordered = sorted(ids, key=lambda s: content_hash([seed, s]))
        k = round(fit_share * len(ordered))
        if len(ordered) >= 2:
            k = min(len(ordered) - 1, max(1, k))
        fit_ids.update(ordered[:k])
    return ([r for r in rows if str(r["sample_id"]) in fit_ids],
            [r for r in rows if str(r["sample_id"]) not in fit_ids])


def _tally(rows: Sequence[dict[str, Any]], config: str, weight_benign: float) -> dict[str, Any]:
    harmful = sum(int(r["bad"][config]) for r in rows if r["kind"] == "harmful")
    benign = sum(int(r["bad"][config]) for r in rows if r["kind"] == "benign")
    return {"configuration": config, "harmful_bad": harmful, "benign_bad": benign,
            "loss": harmful + weight_benign * benign}


def _ranked(rows: Sequence[dict[str, Any]], configs: list[str], weight_benign: float,
            costs: dict[str, float], overall: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Configurations best first: lowest loss, then (a cell's tie) the lower loss over all fitting rows, since a
    cell of a few rows ties often and the configuration better elsewhere is the safer guess, then the cheaper, then
    the one listed first."""
    tallies = [_tally(rows, c, weight_benign) for c in configs]
    overall = overall or {}
    return sorted(tallies, key=lambda t: (t["loss"], overall.get(t["configuration"], 0.0),
                                          float(costs.get(t["configuration"], 0.0)),
                                          configs.index(t["configuration"])))


def fit_selector(fit_rows: Sequence[dict[str, Any]], configurations: dict[str, list[Any]],
                 signals: list[dict[str, Any]], *, target: str, weight_benign: float = 1.0,
                 costs: dict[str, float] | None = None, eval_sample_ids: Sequence[str] | None = None,
                 meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The selector fitted on `fit_rows`: per cell (combination of signal flags) the configuration with the fewest
    failures (harmful ones, plus `weight_benign` times benign ones), ties to the one with fewer failures over all
    fitting rows, then to the lower cost (`costs`: tokens, seconds or
    calls a sample) then to the configuration listed first; the fallback, for a cell never seen, is the best
    configuration over all fitting rows. `eval_sample_ids` (the held-out split) is recorded and must be disjoint."""
    sig = [{"id": s["id"], "judge": s["judge"], "args": dict(s.get("args") or {})} for s in signals]
    ids = [s["id"] for s in sig]
    configs = list(configurations)
    costs = dict(costs or {})
    if not fit_rows:
        raise ValueError("fit_selector: no rows to fit on")
    _check_rows(fit_rows, ids, configs)
    fit_ids = sorted({str(r["sample_id"]) for r in fit_rows})
    overlap = sorted(set(fit_ids) & {str(s) for s in eval_sample_ids or ()})
    if overlap:
        raise ValueError(f"fit_selector: {len(overlap)} evaluation sample(s) are also fitting ones "
                         f"(e.g. {overlap[0]}); split with split_rows")
    overall = {t["configuration"]: t["loss"] for t in _ranked(fit_rows, configs, weight_benign, costs)}
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for r in fit_rows:
        by_cell.setdefault(cell_key(ids, r["signals"]), []).append(r)
    cells = {}
    for key in sorted(by_cell):
        rows = by_cell[key]
        best, *rest = _ranked(rows, configs, weight_benign, costs, overall)
        cells[key] = {**best, "n_harmful": sum(r["kind"] == "harmful" for r in rows),
                      "n_benign": sum(r["kind"] == "benign" for r in rows),
                      "runner_up": rest[0] if rest else None}
    fallback = _ranked(fit_rows, configs, weight_benign, costs)[0]["configuration"]
    classes: dict[str, int] = {}
    for r in fit_rows:
        classes[str(r.get("attack_class", ""))] = classes.get(str(r.get("attack_class", "")), 0) + 1
    fit: dict[str, Any] = {
        "sample_ids": fit_ids, "weight_benign": weight_benign, "costs": costs,
        "n": {"rows": len(fit_rows), "harmful": sum(r["kind"] == "harmful" for r in fit_rows),
              "benign": sum(r["kind"] == "benign" for r in fit_rows)},
        "attack_classes": dict(sorted(classes.items()))}
    if eval_sample_ids is not None:
        fit["eval_sample_ids"] = sorted({str(s) for s in eval_sample_ids})
    selector = {"format": FORMAT, "version": VERSION, "target": target, "signals": sig,
                "configurations": {c: list(configurations[c]) for c in configs},
                "rule": {"cells": cells, "fallback": fallback}, "fit": fit, **(meta or {})}
    return validate_selector(selector, "fit_selector")


def selector_name(selector: dict[str, Any]) -> str:
    """The file name of a selector: by content, so the same selector is always the same file."""
    return f"selector-{content_hash(selector, 16)}.json"


def save_selector(selector: dict[str, Any], folder: str | Path) -> Path:
    """Writes the selector as ``selector-<content hash>.json`` in `folder` (atomically) and returns its path."""
    validate_selector(selector, "save_selector")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / selector_name(selector)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(selector, sort_keys=True, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _rate(values: list[int]) -> dict[str, Any]:
    return proportion(sum(values), len(values))


def _rates(rows: Sequence[dict[str, Any]], bad: list[int]) -> dict[str, Any]:
    """Attack success (harmful rows' failures) and over-refusal (benign rows'), overall and per attack class."""
    def of(kind: str, cls: str | None = None) -> dict[str, Any]:
        return _rate([b for r, b in zip(rows, bad, strict=True)
                      if r["kind"] == kind and (cls is None or str(r.get("attack_class", "")) == cls)])

    classes = sorted({str(r.get("attack_class", "")) for r in rows})
    return {"attack_success": of("harmful"), "over_refusal": of("benign"),
            "per_attack_class": {c: {"attack_success": of("harmful", c), "over_refusal": of("benign", c)}
                                 for c in classes}}


def evaluate(selector: dict[str, Any], rows: Sequence[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """The selector against each fixed configuration on `rows` (the held-out split): attack success and over-refusal
    with Wilson intervals, per attack class too, the share of picks per configuration, the paired differences
    (selector - fixed, bootstrap interval) and whether the selector dominates each fixed configuration (no worse on
    both rates and better on one, point estimates). ``overlap_with_fit`` counts rows whose sample the selector was
    fitted on: anything but 0 flatters it."""
    validate_selector(selector, "evaluate")
    configs = list(selector["configurations"])
    _check_rows(rows, signal_ids(selector), configs)
    picks = [choose(selector, r["signals"])[0] for r in rows]
    keys = [(str(r["sample_id"]), str(r.get("attack_class", ""))) for r in rows]
    chosen_bad = [int(r["bad"][p]) for r, p in zip(rows, picks, strict=True)]
    sel = _rates(rows, chosen_bad)
    out: dict[str, Any] = {"n": len(rows), "selector": sel,
                           "picks": {c: picks.count(c) / len(rows) if rows else 0.0 for c in configs},
                           "fixed": {}, "overlap_with_fit": len({k[0] for k in keys}
                                                                & set(selector.get("fit", {}).get("sample_ids", [])))}
    for c in configs:
        bad = [int(r["bad"][c]) for r in rows]
        fixed = _rates(rows, bad)
        paired = {}
        for kind, measure in (("harmful", "attack_success"), ("benign", "over_refusal")):
            mine = {k: b for k, b, r in zip(keys, chosen_bad, rows, strict=True) if r["kind"] == kind}
            theirs = {k: b for k, b, r in zip(keys, bad, rows, strict=True) if r["kind"] == kind}
            paired[measure] = paired_against(mine, theirs, seed=seed)
        out["fixed"][c] = {**fixed, "paired": paired, "dominates": _dominates(sel, fixed)}
    return out


def _dominates(sel: dict[str, Any], fixed: dict[str, Any]) -> bool:
    a = [sel[m]["rate"] for m in ("attack_success", "over_refusal")]
    b = [fixed[m]["rate"] for m in ("attack_success", "over_refusal")]
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]  # a kind absent: skipped
    return bool(pairs) and all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)
