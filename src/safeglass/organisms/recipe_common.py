"""Pieces every organism recipe shares: a pinned thread count, and reading a card's goals against what was
measured."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to `n` for the block, then restored. Recipes fix it per profile: the
    count decides how reductions split, so the same seed gives the same weights only on the same count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
