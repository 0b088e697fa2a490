"""Target modifiers: something that changes a built target's outputs (glasses, a LoRA adapter, a head ablation,
a fine-tuned tower), listed under ``targets[].modifiers`` and applied in order after the target loads.

A modifier identifies itself without loading anything (``key``, torch-free, computed at plan time for result
keys) and names itself in reports (``label``, after ``apply``). Modifiers are registry components of kind
``modifiers``, so a capability adds one without the runner or the targets knowing it.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TargetModifier:
    """Override ``key`` (what changes outputs, JSON-able, no model needed), ``apply`` and ``label``.

    ``key_arg`` names the target argument a modifier replaced, if any: its key then goes into the target's
    key args under that name, so results made before modifiers existed keep their keys (glasses were once
    ``targets[].args.glasses``). Such modifiers come first in a list, where that argument's effect came.
    """

    name: ClassVar[str] = "modifier"
    key_arg: ClassVar[str | None] = None

    def key(self) -> Any:
        raise NotImplementedError

    def apply(self, target: Any) -> Any:
        """Change `target` (in place or by wrapping it) and return what the run should generate with."""
        raise NotImplementedError

    def label(self) -> str:
        return self.name


def applied_labels(target: Any) -> list[str]:
    """The labels of the modifiers applied to a target, in order (empty for an unmodified one)."""
    return [m.label() for m in getattr(target, "applied_modifiers", ())]


def record_applied(target: Any, modifier: TargetModifier) -> None:
    """Remember an applied modifier on the target, for its label and its recorded config."""
    applied = list(getattr(target, "applied_modifiers", ()))
    applied.append(modifier)
    target.applied_modifiers = tuple(applied)
