"""Where calibration results live, and how a run finds the one for its judge.

Results are JSON files ``<dir>/<judge key>/<labels name>.json``. Two directories are searched:

1. the user's: ``$SAFEGLASS_HOME/calibration`` (``SAFEGLASS_HOME`` defaults to ``~/.cache/safeglass``),
   where ``safeglass judges calibrate`` saves;
2. the project's: ``safeglass/judges/calibration_results/`` (package data), so figures measured
   by the project ship with it.

The user's file wins when both have the same judge key and labels name. The key is the judge's
full identity hash, so a re-versioned or re-configured judge is "not calibrated" until measured.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from safeglass.paths import safeglass_home  # noqa: F401  (re-exported)

log = logging.getLogger("safeglass.calibration")

SHIPPED_DIR = Path(__file__).resolve().parent / "calibration_results"
SUMMARY_FIELDS = ("dataset", "accuracy", "accuracy_ci", "f1", "kappa", "n")


def user_dir() -> Path:
    return safeglass_home() / "calibration"


def search_dirs() -> list[Path]:
    return [user_dir(), SHIPPED_DIR]


def _safe(name: str) -> str:
    # Keys look like "keyword-refusal@0123456789"; keep them readable but never a path escape.
    return "".join(c if c.isalnum() or c in "-_.@+" else "_" for c in name).lstrip(".") or "_"


def save(result: dict[str, Any], directory: str | Path | None = None) -> Path:
    """Write a calibration result; returns its path."""
    root = Path(directory) if directory is not None else user_dir()
    path = root / _safe(result["judge"]["key"]) / f"{_safe(result['dataset'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def find(judge_key: str) -> dict[str, dict[str, Any]]:
    """All stored calibrations for an exact judge key, by labels name (user dir first)."""
    found: dict[str, dict[str, Any]] = {}
    for root in search_dirs():
        folder = root / _safe(judge_key)
        if not folder.is_dir():
            continue
        for f in sorted(folder.glob("*.json")):
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable calibration %s: %s", f, exc)
                continue
            if not isinstance(data, dict) or (data.get("judge") or {}).get("key") != judge_key:
                continue  # a copied or renamed file must not vouch for another judge
            found.setdefault(str(data.get("dataset", f.stem)), data)
    return found


def pick(judge: dict[str, Any]) -> dict[str, Any] | None:
    """The calibration a run summary shows for a judge: refusal labels for refusal judges, else
    objective labels; among several, the one with the most items. None when not calibrated."""
    key = judge.get("key")
    if not key:
        return None
    found = list(find(str(key)).values())
    if not found:
        return None
    prefer = "refusal" if judge.get("measure") == "refusal" else "objective"
    found.sort(key=lambda d: (d.get("label_kind") != prefer, -int(d.get("n") or 0), str(d.get("dataset"))))
    best = found[0]
    out = {k: best.get(k) for k in SUMMARY_FIELDS}
    out.update({"label_kind": best.get("label_kind"), "precision": best.get("precision"),
                "recall": best.get("recall"), "f1_ci": best.get("f1_ci"), "kappa_ci": best.get("kappa_ci"),
                "others": sorted(str(d.get("dataset")) for d in found[1:])})
    return out
