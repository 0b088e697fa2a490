"""Defenses in a row: ``{name: chain, args: {steps: [safety_prompt, {name: output_filter, args: {...}}]}}``
(or the shorthand ``{id: ..., chain: [...]}`` in a run config).

The first step sees the request first and the reply last: each step's model is the rest of the chain in
front of the target. A chain of one step is that step, with its result keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safeglass.defenses.base import Defense
from safeglass.defenses.context import DefenseContext, Stage, Uses
from safeglass.registry import registry
from safeglass.types import Generation, GenerationParams, Sample, Target


class Chain(Defense):
    """An ordered chain of defenses.

    Args:
        steps: the defenses in order, each a registry name or ``{name, args}``; the first sees the request first.
    """

    name = "chain"

    def __init__(self, steps: Sequence[Any]) -> None:
        if not isinstance(steps, list | tuple) or not steps:
            raise ValueError("defense chain: 'steps' must be a non-empty list of defenses")
        self.steps: list[Defense] = []
        for i, step in enumerate(steps):
            ref = Uses.parse(step, "defenses", "", f"defense chain: steps[{i}]")
            if ref.name == self.name:
                raise ValueError(f"defense chain: steps[{i}]: list the steps of a nested chain in this one instead")
            self.steps.append(registry("defenses").build(ref.name, **ref.args))

    def config(self) -> dict[str, Any]:
        if len(self.steps) == 1:
            return self.steps[0].config()
        return {"name": self.name, "steps": [s.config() for s in self.steps]}

    def uses(self) -> list[Uses]:
        return [u for s in self.steps for u in s.uses()]

    def setup(self, ctx: DefenseContext) -> None:
        super().setup(ctx)
        for s in self.steps:
            s.setup(ctx)

    def generate(self, target: Target, samples: Sequence[Sample], params: GenerationParams) -> list[Generation]:
        inner: Target = target
        for step in reversed(self.steps[1:]):
            inner = Stage(step, inner)
        return self.steps[0].generate(inner, samples, params)
