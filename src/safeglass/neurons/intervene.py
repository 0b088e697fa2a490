"""Putting glasses on a model: ``wear`` (reversible forward pre-hooks scaling each site's input) or
``fold`` (the same scaling multiplied into the columns of the site's linear weight: zero overhead).

Scaling input j of ``down_proj`` by a is scaling column j of its weight by a, bias untouched, so both
give the same outputs; every KV-cached decoding step goes through the same modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from safeglass.neurons.glasses import Glasses


def _root(target: Any) -> torch.nn.Module:
    model = target if isinstance(target, torch.nn.Module) else getattr(target, "model", None)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"glasses need a white-box target or a torch module, not {type(target).__name__}")
    return model


def _in_width(module: torch.nn.Module) -> int | None:
    if hasattr(module, "in_features"):
        return int(module.in_features)
    weight = getattr(module, "weight", None)
    return int(weight.shape[1]) if isinstance(weight, torch.Tensor) and weight.ndim == 2 else None


def resolve(target: Any, glasses: Glasses) -> list[tuple[str, torch.nn.Module, np.ndarray]]:
    """(site name, module, alpha) for every site, after checking that each resolves and fits."""
    root = _root(target)
    out = []
    for s in glasses.sites:
        try:
            module = root.get_submodule(s.module_path)
        except AttributeError:
            raise ValueError(f"site {s.name}: module {s.module_path!r} does not exist in "
                             f"{type(root).__name__}; were these glasses made for another model?") from None
        width = _in_width(module)
        if width != s.width:
            raise ValueError(f"site {s.name}: {s.module_path} takes {width} inputs, the glasses have {s.width}")
        out.append((s.name, module, glasses.alphas[s.name]))
    return out


@contextmanager
def wear(target: Any, glasses: Glasses) -> Iterator[Any]:
    """Within the block every site's input is multiplied by its alpha; hooks go away on exit."""
    handles = []
    try:
        for _, module, alpha in resolve(target, glasses):
            ref = next(module.parameters(), None)
            a = torch.from_numpy(alpha).to(device=ref.device if ref is not None else "cpu")

            def pre_hook(mod: torch.nn.Module, args: tuple[Any, ...], a: torch.Tensor = a) -> tuple[Any, ...]:
                x = args[0]
                return (x * a.to(x.dtype), *args[1:])

            handles.append(module.register_forward_pre_hook(pre_hook))
        yield target
    finally:
        for h in handles:
            h.remove()


@dataclass
class Folded:
    """Undo handle of ``fold``: the original columns of every changed weight, restored bit-exactly."""

    saved: list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    glasses_hash: str = ""
    undone: bool = False

    def undo(self) -> None:
        if self.undone:
            return
        with torch.no_grad():
            for weight, cols, original in reversed(self.saved):
                weight[:, cols] = original
        self.saved.clear()
        self.undone = True

    def __enter__(self) -> Folded:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.undo()


def fold(target: Any, glasses: Glasses) -> Folded:
    """Multiplies each site's weight columns by alpha in place; ``.undo()`` (or ``with``) restores them."""
    plan = []
    for name, module, alpha in resolve(target, glasses):
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or not weight.is_floating_point():
            raise ValueError(f"site {name}: cannot fold into {type(module).__name__} (needs a float 2-D weight; "
                             "quantised layers can wear the glasses as hooks instead)")
        plan.append((weight, alpha))
    handle = Folded(glasses_hash=glasses.hash)
    try:
        with torch.no_grad():
            for weight, alpha in plan:
                changed = np.flatnonzero(alpha != 1.0)
                if changed.size == 0:
                    continue
                cols = torch.from_numpy(changed).to(weight.device)
                original = weight[:, cols].clone()
                handle.saved.append((weight, cols, original))
                a = torch.from_numpy(alpha[changed]).to(device=weight.device, dtype=torch.float32)
                weight[:, cols] = (original.float() * a).to(weight.dtype)
    except BaseException:
        handle.undo()
        raise
    return handle
