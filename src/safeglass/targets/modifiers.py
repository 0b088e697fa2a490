"""Target modifiers: something that changes a built target's outputs (glasses, a LoRA adapter, a head ablation,
a fine-tuned tower), listed under ``targets[].modifiers`` and applied in order after the target loads.

A modifier identifies itself without loading anything (``key``, torch-free, computed at plan time for result
keys) and names itself in reports (``label``, after ``apply``). Modifiers are registry components of kind
``modifiers``, so a capability adds one without the runner or the targets knowing it.

A modifier that trains (unlearning, robust fine-tuning, an adapter) says so (``trains = True``) and gives
``train(target, workdir)``; the runner builds its output once per (modifier key, base target key) through the
artifact store (``build_trained``) and hands the finished folder to ``apply`` as ``self.artifact``, so workers and
resumes read it rather than train again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from safeglass.artifacts import build_once


class TargetModifier:
    """Override ``key`` (what changes outputs, JSON-able, no model needed), ``apply`` and ``label``.

    ``key_arg`` names the target argument a modifier replaced, if any: its key then goes into the target's
    key args under that name, so results made before modifiers existed keep their keys (glasses were once
    ``targets[].args.glasses``). Such modifiers come first in a list, where that argument's effect came.
    """

    name: ClassVar[str] = "modifier"
    key_arg: ClassVar[str | None] = None
    trains: ClassVar[bool] = False
    artifact: Path | None = None  # a modifier that trains: its finished artifact folder, set before `apply`

    def key(self) -> Any:
        raise NotImplementedError

    def train(self, target: Any, workdir: Path) -> None:
        """A modifier that trains: write what `apply` reads into `workdir` (the base `target` is loaded, with the
        modifiers before this one applied). `workdir` keeps what an interrupted attempt left; checkpoint into
        ``workdir / artifacts.CHECKPOINTS`` (``TrainLoop(checkpoint_dir=...)``) to resume rather than restart."""
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


def build_trained(modifier: Any, target: Any, base_key: Any, root: str | Path | None = None,
                  versions: dict[str, str] | None = None) -> Path:
    """Train `modifier` on `target` once per (its name and key, `base_key`: the key of the target it modifies,
    earlier modifiers included) into `root` (None: the cache), set ``modifier.artifact`` and return the folder."""
    payload = {"modifier": modifier.name, "key": modifier.key(), "target": base_key}
    modifier.artifact = build_once("modifiers", payload, lambda workdir: modifier.train(target, workdir), root,
                                   versions=versions)
    return modifier.artifact


def remove_modifiers(target: Any) -> None:
    """Undo the applied modifiers that can be undone (those with ``remove()``, e.g. hooks), last first, and forget
    them; call it when a target is unloaded or is to run on unmodified."""
    applied = list(getattr(target, "applied_modifiers", ()))
    kept = []
    for m in reversed(applied):
        if hasattr(m, "remove"):
            m.remove()
        else:
            kept.append(m)
    target.applied_modifiers = tuple(reversed(kept))
