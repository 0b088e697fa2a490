"""Goals read the same way in every organism recipe."""

from __future__ import annotations

import pytest

from safeglass.organisms import safesmol, safesmol_vl, shapeclip
from safeglass.organisms.recipe_common import goals_shortfall


def test_goals_shortfall_min_max_and_missing() -> None:
    goals = {"acc_min": 0.9, "over_max": 0.1, "ratio_min": 3.0}
    keys = {"acc_min": "acc", "over_max": "over", "ratio_min": "ratio"}
    assert goals_shortfall(goals, keys, {"acc": 0.95, "over": 0.05, "ratio": 3.0}) == (True, {})
    met, short = goals_shortfall(goals, keys, {"acc": 0.8, "over": 0.4})
    assert not met and short == {"acc": 0.1, "over": 0.3, "ratio": None}
    with pytest.raises(ValueError, match="_min or _max"):
        goals_shortfall({"acc": 1.0}, {"acc": "acc"}, {"acc": 0.5})


@pytest.mark.parametrize("recipe", [shapeclip, safesmol, safesmol_vl])
def test_every_recipe_maps_each_goal_to_a_figure(recipe) -> None:
    assert set(recipe.GOAL_KEYS) == set(recipe.GOALS)
    met, short = recipe.goals_report({})
    assert not met and set(short) == set(recipe.GOAL_KEYS.values())
