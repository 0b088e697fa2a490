"""The adaptive selector's file and rule, torch-free: what ``adaptive`` applies per input and what
``study/selector.py`` fits and evaluates offline (it imports these, so both read a selector the same way).

A selector names cheap input signals (a judge each, read as its flag), the configurations it chooses among (each
a chain of defenses) and a rule: a cell per combination of signal flags seen in fitting, each with its
configuration and the figures it was chosen on, and a fallback for a combination never seen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT = "safeglass-selector"
VERSION = 1


class SelectorError(ValueError):
    """A selector that cannot be used; the message names the file and the field."""


def cell_key(signal_ids: list[str], flags: dict[str, bool]) -> str:
    """The cell of a combination of flags: ``ocr=1,harm=0`` in the selector's signal order (a readable key,
    stable under JSON, that says which signal was on)."""
    return ",".join(f"{sid}={int(bool(flags[sid]))}" for sid in signal_ids)


def signal_ids(selector: dict[str, Any]) -> list[str]:
    return [s["id"] for s in selector["signals"]]


def choose(selector: dict[str, Any], signals: dict[str, bool]) -> tuple[str, dict[str, Any]]:
    """(configuration id, explanation) for one input's signal flags. The explanation holds the flags, the cell, whether
    the fallback was used (a combination fitting never saw) and the figures the cell's choice was fitted on."""
    ids = signal_ids(selector)
    missing = [s for s in ids if s not in signals]
    if missing:
        raise KeyError(f"selector: no value for signal(s) {', '.join(missing)}")
    key = cell_key(ids, signals)
    cell = selector["rule"]["cells"].get(key)
    fallback = cell is None
    chosen = selector["rule"]["fallback"] if fallback else cell["configuration"]
    why: dict[str, Any] = {"configuration": chosen, "cell": key,
                           "signals": {s: bool(signals[s]) for s in ids}, "fallback": fallback}
    if cell is not None:
        why["fitted"] = {k: v for k, v in cell.items() if k != "configuration"}
    return chosen, why


def _fail(source: str, field: str, problem: str) -> SelectorError:
    return SelectorError(f"{source}: field '{field}': {problem}")


def _check_step(step: Any, source: str, field: str) -> None:
    if isinstance(step, str) and step:
        return
    if isinstance(step, dict) and isinstance(step.get("name"), str) and set(step) <= {"name", "args"} \
            and isinstance(step.get("args", {}), dict):
        return
    raise _fail(source, field, f"a step is a registry name or {{name, args}}, not {step!r}")


def validate_selector(selector: Any, source: str = "selector") -> dict[str, Any]:
    """`selector` when it is a usable selector; else a SelectorError naming `source` and the first bad field."""
    if not isinstance(selector, dict):
        raise _fail(source, "(top)", f"a selector is a JSON object, not {type(selector).__name__}")
    for field in ("format", "version", "signals", "configurations", "rule"):
        if field not in selector:
            raise _fail(source, field, "missing")
    if selector["format"] != FORMAT:
        raise _fail(source, "format", f"expected {FORMAT!r}, got {selector['format']!r}")
    if selector["version"] != VERSION:
        raise _fail(source, "version", f"this safeglass reads version {VERSION}, not {selector['version']!r}")
    signals = selector["signals"]
    if not isinstance(signals, list):
        raise _fail(source, "signals", "expected a list of {id, judge, args}")
    seen: set[str] = set()
    for i, s in enumerate(signals):
        if not isinstance(s, dict) or not isinstance(s.get("id"), str) or not s["id"]:
            raise _fail(source, f"signals[{i}].id", "each signal needs a non-empty string id")
        if not isinstance(s.get("judge"), str) or not s["judge"]:
            raise _fail(source, f"signals[{i}].judge", "each signal names the judge whose flag it is")
        if not isinstance(s.get("args", {}), dict):
            raise _fail(source, f"signals[{i}].args", "expected an object of the judge's options")
        if s["id"] in seen or any(c in s["id"] for c in ",="):  # both would make cell keys ambiguous
            raise _fail(source, f"signals[{i}].id", f"{s['id']!r} is repeated or holds ',' or '='")
        seen.add(s["id"])
    configs = selector["configurations"]
    if not isinstance(configs, dict) or not configs:
        raise _fail(source, "configurations", "expected a non-empty object {id: [steps]}")
    for cid, steps in configs.items():
        if not isinstance(steps, list) or not steps:
            raise _fail(source, f"configurations.{cid}", "expected a non-empty list of defense steps")
        for j, step in enumerate(steps):
            _check_step(step, source, f"configurations.{cid}[{j}]")
    rule = selector["rule"]
    if not isinstance(rule, dict) or not isinstance(rule.get("cells"), dict):
        raise _fail(source, "rule.cells", "expected an object {cell: {configuration, ...}}")
    if rule.get("fallback") not in configs:
        raise _fail(source, "rule.fallback", f"{rule.get('fallback')!r} is not one of the configurations "
                                             f"({', '.join(configs)})")
    ids = [s["id"] for s in signals]
    for key, cell in rule["cells"].items():
        where = f"rule.cells.{key}"
        parts = key.split(",") if key else []
        if [p.split("=")[0] for p in parts] != ids or any(p.split("=", 1)[-1] not in ("0", "1") for p in parts):
            raise _fail(source, where, f"a cell is {cell_key(ids, dict.fromkeys(ids, True))!r}-shaped "
                                       "(every signal in order, 0 or 1)")
        if not isinstance(cell, dict) or cell.get("configuration") not in configs:
            got = cell.get("configuration") if isinstance(cell, dict) else cell
            raise _fail(source, f"{where}.configuration", f"{got!r} is not one of the configurations "
                                                          f"({', '.join(configs)})")
    return selector


def load_selector(path: str | Path) -> dict[str, Any]:
    """A selector file, read and validated (errors name the file and the field)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SelectorError(f"{path}: cannot read the selector file: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SelectorError(f"{path}: not JSON: {exc}") from exc
    return validate_selector(raw, str(path))
