"""Dyslexify's head ablation as a target modifier: a VLM whose image tower is a CLIP vision transformer
(SafeSmol-VL carries ShapeCLIP's, a LLaVA carries OpenAI CLIP's) runs with the typographic heads switched off.

    targets:
      - name: safesmol-vl
        modifiers: [{name: ablate-heads, args: {heads: [[3, 2], [2, 2]]}}]
      # or the heads `safeglass clip defend` kept: {name: ablate-heads, args: {from_result: runs/x/clip-defend.json}}

The hooks are `heads.ablate`'s (the heads' contribution zeroed before each layer's output projection), held open
for the target's life and removed by `remove()` (`targets.modifiers.remove_modifiers(target)` calls it for every
applied modifier). `positions: class` zeroes only the class token, as Dyslexify fits and scores it on CLIP;
a LLaVA-style VLM reads the patch tokens, which then change only through later layers' attention to the class
token, so `positions: all` (every token) is the stronger choice there. The key is the heads (sorted) and the
positions, read without loading anything: two configs naming the same heads share results, other heads do not.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from safeglass.targets.modifiers import TargetModifier, record_applied

POSITIONS = ("class", "all")


def heads_from_result(path: str | Path) -> list[list[int]]:
    """The heads a `clip defend` result kept (its fit.kept, or methods.dyslexify.heads)."""
    p = Path(path)
    try:
        done = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"ablate-heads: cannot read {p}: {exc}") from None
    kept = (done.get("fit") or {}).get("kept")
    if kept is None:
        kept = ((done.get("methods") or {}).get("dyslexify") or {}).get("heads")
    if kept is None:
        raise ValueError(f"ablate-heads: {p} is not a clip defend result with Dyslexify's kept heads")
    return [list(map(int, h)) for h in kept]


def vision_transformer(model: Any) -> Any:
    """The CLIP vision transformer (the module with `.encoder.layers`) inside a VLM or a CLIP model."""
    for owner in (getattr(model, "model", None), model):
        tower = getattr(owner, "vision_tower", None) if owner is not None else None
        if tower is None:
            continue
        tower = getattr(tower, "vision_model", tower)  # CLIPVisionModel wraps a CLIPVisionTransformer
        if hasattr(getattr(tower, "encoder", None), "layers"):
            return tower
    inner = getattr(model, "vision_model", None)
    if inner is not None and hasattr(getattr(inner, "encoder", None), "layers"):
        return inner
    raise ValueError(f"ablate-heads: no CLIP-style vision tower (vision_tower.encoder.layers) in "
                     f"{type(model).__name__}")


class AblateHeadsModifier(TargetModifier):
    """Switches attention heads of a white-box VLM's CLIP vision tower off (Dyslexify's ablation).

    Args:
        heads: [layer, head] pairs to switch off.
        from_result: a `safeglass clip defend` result (clip-defend.json) whose kept heads to switch off too.
        positions: class (only the class token, as Dyslexify) or all (every token: what a LLaVA-style VLM reads).
    """

    name: ClassVar[str] = "ablate-heads"

    def __init__(self, heads: list[list[int]] | None = None, from_result: str | None = None,
                 positions: str = "class") -> None:
        if heads is None and from_result is None:
            raise ValueError("ablate-heads: give heads, from_result or both")
        if positions not in POSITIONS:
            raise ValueError(f"ablate-heads: positions {positions!r}; known: {', '.join(POSITIONS)}")
        self._given = list(heads or [])
        self.from_result = from_result
        self.positions = positions
        self._heads: list[tuple[int, int]] | None = None
        self._open: contextlib.ExitStack | None = None

    @property
    def heads(self) -> list[tuple[int, int]]:
        """The given heads and a result's kept ones, sorted without repeats (read once; ValueError if bad)."""
        if self._heads is None:
            got = [*self._given, *(heads_from_result(self.from_result) if self.from_result else [])]
            if not got or any(not isinstance(h, list | tuple) or len(h) != 2 for h in got):
                raise ValueError("ablate-heads: heads are a non-empty list of [layer, head] pairs")
            self._heads = sorted({(int(h[0]), int(h[1])) for h in got})
        return self._heads

    def key(self) -> dict[str, Any]:
        # the heads by content: a result file moved or renamed keeps the key, other heads change it
        return {"heads": [list(h) for h in self.heads], "positions": self.positions}

    def apply(self, target: Any) -> Any:
        from safeglass.clip.heads import ablate

        # heads.ablate reads `vision_model.encoder.layers` and whether only the class token is touched
        view = SimpleNamespace(vision_model=vision_transformer(target.model),
                               has_class_token=self.positions == "class")
        stack = contextlib.ExitStack()
        stack.enter_context(ablate(view, self.heads))  # raises, hooking nothing, on a head the tower lacks
        self._open = stack
        record_applied(target, self)
        return target

    def remove(self) -> None:
        """Take the hooks off (the target is unloaded, or runs on without the ablation)."""
        if self._open is not None:
            self._open.close()
            self._open = None

    @property
    def active(self) -> bool:
        return self._open is not None

    def label(self) -> str:
        where = "" if self.positions == "class" else " (all tokens)"
        return "ablated " + ", ".join(f"L{layer}H{head}" for layer, head in self.heads) + where

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.key()}
