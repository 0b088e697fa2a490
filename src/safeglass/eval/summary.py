"""The run summary: metadata, component identities, metric rows, costs and errors, as one JSON document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safeglass.eval.agreement import summary_agreement
from safeglass.eval.metrics import collect, cost_rows, metric_rows, sample_records
from safeglass.eval.runner import run_store
from safeglass.eval.store import Store
from safeglass.eval.three_way import three_way_rows
from safeglass.hashing import content_hash
from safeglass.judges.calibration_store import pick as calibration_pick
from safeglass.machine import distinct_machines


def build_summary(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run_dir = Path(run_dir)
    with Store(run_store(run_dir)) as store:
        gens, judges = collect(store)
        seed = int(store.get_meta("seed", 0))
        baseline = store.get_meta("baseline_defense", "none")
        rows = metric_rows(gens, judges, baseline=baseline, seed=seed)
        targets = []
        machines = _machines(gens)
        for tid in sorted({g["target"] for g in gens}):
            label = store.get_meta(f"target_label:{tid}", {}) or {}
            cfg = store.get_meta(f"target_config:{tid}", {}) or {}
            latest = store.get_meta(f"target_machine:{tid}")
            targets.append({"name": tid, "label": label.get("label", tid), "organism": label.get("organism", False),
                            "config_hash": content_hash(cfg), "config": cfg, "machine": latest,
                            # rows stored before replies kept their machine fall back to the target's latest
                            "machines": machines.get(tid) or distinct_machines([latest])})
        errors = list(store.get_meta("load_errors", []) or [])
        errors += [{"where": f"{e['stage']} {e['key'][:12]}", "message": e["message"]}
                   for e in _unresolved_errors(store.errors(), gens, judges)]
        summary = {
            "run": {"name": store.get_meta("name", run_dir.name), "created": store.get_meta("created", ""),
                    "config_hash": store.get_meta("config_hash", ""), "seed": seed,
                    "versions": store.get_meta("versions", {}), "run_dir": str(run_dir),
                    "n_generations": len(gens), "n_errors": len(errors), "baseline_defense": baseline,
                    "config": store.get_meta("config", {}),
                    "primary_judge": _primary_judge(store.get_meta("config", {}) or {}, judges)},
            "targets": targets,
            "components": store.get_meta("components", {}),
            "judges": [{**j, "calibration": j.get("calibration") or calibration_pick(j)} for j in judges.values()],
            "rows": rows,
            # what each reply cost (target calls, tokens, seconds) beside the baseline defense's: judge-free
            "costs": cost_rows(gens, baseline),
            # judges of one measure compared per row: where a figure depends on the choice of judge
            "agreement": summary_agreement(gens, judges),
            # full compliance / partial refusal / full refusal per row, for a three-way judge
            "three_way": three_way_rows(gens, judges),
            "errors": errors,
        }
    return summary, sample_records(gens)


def _machines(gens: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The distinct machines each target's replies were made on, read from each reply's provenance: a run resumed
    on another CPU keeps both, and a bfloat16 reply is never credited to the wrong one."""
    per_target: dict[str, list[Any]] = {}
    for g in sorted(gens, key=lambda g: g.get("created") or 0):
        try:
            machine = json.loads(g.get("provenance") or "{}").get("machine")
        except ValueError:
            machine = None
        per_target.setdefault(g["target"], []).append(machine)
    return {t: distinct_machines(ms) for t, ms in per_target.items()}


def _primary_judge(config: dict[str, Any], judges: dict[str, dict[str, Any]]) -> str | None:
    """The judge key the config's ``primary_judge`` (a judge id) names, for the report's finding; None if unset."""
    wanted = config.get("primary_judge")
    return next((key for key, j in judges.items() if j.get("id") == wanted), None) if wanted else None


def _unresolved_errors(errors: list[dict[str, Any]], gens: list[dict[str, Any]],
                       judges: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Errors that a later (resumed) run has not fixed: a generation still missing, a verdict still absent."""
    generated = {g["key"]: g for g in gens}
    judge_key_of = {f"judge:{j.get('id')}": key for key, j in judges.items()}
    out = []
    for e in errors:
        g = generated.get(e["key"])
        if e["stage"] == "generate" and g is not None:
            continue
        if e["stage"] in judge_key_of and g is not None and judge_key_of[e["stage"]] in g["verdicts"]:
            continue
        out.append(e)
    return out
