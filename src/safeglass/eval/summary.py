"""The run summary: metadata, component identities, metric rows and errors, as one JSON document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safeglass.eval.metrics import collect, metric_rows, sample_records
from safeglass.eval.runner import STORE_NAME
from safeglass.eval.store import Store
from safeglass.hashing import content_hash
from safeglass.judges.calibration_store import pick as calibration_pick


def build_summary(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run_dir = Path(run_dir)
    path = run_dir / STORE_NAME
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: no {STORE_NAME} here; is this a safeglass run directory?")
    with Store(path) as store:
        gens, judges = collect(store)
        seed = int(store.get_meta("seed", 0))
        baseline = store.get_meta("baseline_defense", "none")
        rows = metric_rows(gens, judges, baseline=baseline, seed=seed)
        targets = []
        for tid in sorted({g["target"] for g in gens}):
            label = store.get_meta(f"target_label:{tid}", {}) or {}
            cfg = store.get_meta(f"target_config:{tid}", {}) or {}
            targets.append({"name": tid, "label": label.get("label", tid), "organism": label.get("organism", False),
                            "config_hash": content_hash(cfg), "config": cfg,
                            "machine": store.get_meta(f"target_machine:{tid}")})
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
            "errors": errors,
        }
    return summary, sample_records(gens)


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
