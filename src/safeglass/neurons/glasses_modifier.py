"""Glasses as a target modifier: an SGM / AurA glasses folder folded into a white-box target's weights.

``targets[].modifiers: [{name: glasses, args: {path: DIR}}]``; the older ``targets[].args.glasses: DIR``
becomes this modifier when the config is read, with the same result keys.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

from safeglass.targets.modifiers import TargetModifier, record_applied

log = logging.getLogger("safeglass.neurons")


def glasses_key(path: str | Path) -> str:
    """Glasses enter result keys by content (the hash glasses.json records, checked again when the target
    loads them), so moving or renaming a glasses folder keeps finished results."""
    p = Path(path)
    meta = p if p.name.endswith(".json") else p / "glasses.json"
    try:
        return "sha:" + str(json.loads(meta.read_text(encoding="utf-8"))["hash"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"glasses {path}: cannot read the content hash from {meta}: {exc}") from None


class GlassesModifier(TargetModifier):
    """Folds glasses into the target's weights for its lifetime (zero overhead at generation).

    Args:
        path: a glasses folder (from ``neurons apply --out`` or ``neurons find``) or its glasses.json.
    """

    name: ClassVar[str] = "glasses"
    key_arg: ClassVar[str | None] = "glasses"

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self.glasses: Any = None

    def key(self) -> str:
        return glasses_key(self.path)

    def apply(self, target: Any) -> Any:
        from safeglass.neurons.glasses import Glasses
        from safeglass.neurons.intervene import fold

        glasses = Glasses.load(self.path)
        made_for = (glasses.provenance.get("target") or {}).get("weights")
        mine = _weights_of(target)
        if made_for and mine and made_for != mine:
            log.warning("%s: glasses %s were made for other weights (%s, this model has %s)",
                        getattr(target, "name", "target"), self.path, made_for, mine)
        fold(target, glasses)
        self.glasses = glasses
        record_applied(target, self)
        return target

    def label(self) -> str:
        if self.glasses is None:
            return "glasses"
        strength = self.glasses.params.get("strength")
        return f"{self.glasses.method}{f' s{strength:g}' if isinstance(strength, int | float) else ''} glasses"

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "hash": self.glasses.hash if self.glasses is not None else None}


def _weights_of(target: Any) -> Any:
    try:
        return target.config().get("weights")
    except Exception:  # a target without a config (or a failing one) is still worn; only the check is skipped
        return None
