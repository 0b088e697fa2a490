"""What every organism's model card records, built the same way by each recipe: the run (seed, profile, time
budget), the goals and their shortfall, the recipe itself and the library versions."""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

C = TypeVar("C")


class Recipe(Protocol):
    """A recipe profile: a dataclass with at least a name and a pinned thread count."""

    @property
    def name(self) -> str: ...

    @property
    def threads(self) -> int: ...


def goals_shortfall(goals: Mapping[str, float], goal_keys: Mapping[str, str],
                    measured: Mapping[str, Any]) -> tuple[bool, dict[str, float | None]]:
    """(all goals met, shortfall per unmet goal in its own unit).

    ``goals`` maps a goal name ending in ``_min`` or ``_max`` to its bound, ``goal_keys`` the goal to the
    measured figure it reads. A goal whose figure is missing is unmet (shortfall None)."""
    short: dict[str, float | None] = {}
    for goal, key in goal_keys.items():
        value = measured.get(key)
        if value is None:
            short[key] = None
            continue
        if goal.endswith("_min"):
            gap = goals[goal] - value
        elif goal.endswith("_max"):
            gap = value - goals[goal]
        else:
            raise ValueError(f"goal {goal!r}: the name must end in _min or _max")
        if gap > 0:
            short[key] = round(gap, 4)
    return not short, short


def rate(flags: Sequence[bool]) -> float:
    """The share of true flags, to 4 places (0.0 for none): the precision every card's rates carry."""
    return round(float(np.mean(flags)), 4) if len(flags) else 0.0


def run_fields(cfg: Recipe, seed: int, seconds: Mapping[str, float],
               stop: Mapping[str, int | None]) -> dict[str, Any]:
    """seed, profile, the timings (``build_seconds``, ...), threads and where a time budget stopped training
    (`TrainLoop.stop_fields`), in the order the cards have them."""
    return {"seed": seed, "profile": cfg.name, **seconds, "threads": cfg.threads, **stop}


def goal_fields(measured: Mapping[str, Any], goals: Mapping[str, float], met: bool,
                short: Mapping[str, float | None], *, goal_judge: str | None = None,
                judges: Mapping[str, str] | None = None,
                goal_keys: Mapping[str, str] | None = None) -> dict[str, Any]:
    """measured, goals, the judge the goals read with the judges' identities (figures move when a judge does),
    the goal -> figure map where figures are named otherwise than their goals, goals_met and shortfall."""
    out: dict[str, Any] = {"measured": measured, "goals": goals}
    if goal_judge is not None:
        out.update(goal_judge=goal_judge, judges=judges)
    if goal_keys is not None:
        out["goal_keys"] = goal_keys
    out.update(goals_met=met, shortfall=short)
    return out


def recipe_fields(cfg: Any) -> dict[str, Any]:
    """A recipe dataclass as the card file holds it (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def recipe_config(cls: type[C], recipe: Mapping[str, Any]) -> C:
    """The recipe dataclass back from a card's ``recipe`` (lists as tuples again; fields it no longer has are
    dropped, so older cards still load)."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # C is a dataclass by contract
    return cls(**{k: _tuples(v) for k, v in recipe.items() if k in fields})


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def versions(*packages: str) -> dict[str, str]:
    """safeglass's version and each named package's, in that order."""
    from safeglass.version import __version__

    return {"safeglass": __version__, **{p: str(importlib.import_module(p).__version__) for p in packages}}
