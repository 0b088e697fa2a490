"""Goals read the same way in every organism recipe (through safeglass.training.cards.goals_shortfall)."""

from __future__ import annotations

import pytest

from safeglass.organisms import safesmol, safesmol_vl, shapeclip


@pytest.mark.parametrize("recipe", [shapeclip, safesmol, safesmol_vl])
def test_every_recipe_maps_each_goal_to_a_figure(recipe) -> None:
    assert set(recipe.GOAL_KEYS) == set(recipe.GOALS)
    met, short = recipe.goals_report({})
    assert not met and set(short) == set(recipe.GOAL_KEYS.values())
