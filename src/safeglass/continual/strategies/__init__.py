"""Continual-learning strategies in plain torch, each one small class over one training loop; `build` makes one by
name, and a `+gate` suffix plugs the entropy gate (`safeglass.continual.mitigation`) into a replay strategy."""

from __future__ import annotations

from typing import Any

from safeglass.continual.strategies.base import Settings, Strategy

# name -> "module:Class", imported when built
STRATEGIES = {
    "finetune": "simple:FineTune", "er": "simple:ER", "derpp": "replay:DERpp", "er_ace": "replay:ERACE",
    "lwf": "regularise:LwF", "gdumb": "gdumb:GDumb", "agem": "regularise:AGEM", "esrm": "esrm:ESRM",
}
BASELINES = ("finetune", "er", "derpp", "er_ace", "lwf", "gdumb", "agem")


def known(name: str) -> str | None:
    """None when `name` names a strategy (optionally `+gate` on one with a memory), else the problem."""
    base, _, plug = name.partition("+")
    if base not in STRATEGIES:
        from safeglass.schema import did_you_mean

        return f"unknown strategy {name!r}{did_you_mean(base, STRATEGIES)}; known: {', '.join(STRATEGIES)}"
    if plug and plug != "gate":
        return f"unknown plug-in {plug!r} in {name!r}; known: gate"
    if plug and base in ("finetune", "lwf"):
        return f"{name!r}: the gate sits on a memory's door and {base} keeps no memory"
    return None


def build(name: str, dim: int, n_classes: int, settings: Settings, seed: int = 0, scenario: str = "class",
          task_classes: list[tuple[int, ...]] | None = None, gate: dict[str, Any] | None = None) -> Strategy:
    import importlib

    problem = known(name)
    if problem:
        raise ValueError(problem)
    base, _, plug = name.partition("+")
    module, cls = STRATEGIES[base].split(":")
    klass = getattr(importlib.import_module(f"safeglass.continual.strategies.{module}"), cls)
    s = klass(dim, n_classes, settings, seed, scenario, task_classes)
    if plug == "gate":
        from safeglass.continual.mitigation import EntropyGate

        s.gate = EntropyGate(**(gate or {}))
        s.name = name
    return s
