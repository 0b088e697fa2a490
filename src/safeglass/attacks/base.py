"""The Attack interface: a sample in, an attacked sample out (same id, recorded attack config)."""

from __future__ import annotations

from typing import Any

from safeglass.types import Sample


class Attack:
    name: str = "none"
    # What the attack needs to see of the target: "black-box" attacks run before the plan is made;
    # "white-box" ones (PGD) get the target in ``apply``.
    access: str = "black-box"

    def config(self) -> dict[str, Any]:
        return {"name": self.name}

    def apply(self, sample: Sample, target: Any = None) -> Sample:
        return sample


class NoAttack(Attack):
    """The prompt as the dataset gives it."""

    name = "none"
