"""Greedy replies for an organism's evaluation, with a progress bar.

An evaluation generates hundreds of replies (minutes on a small CPU: `organisms verify` took 6.5 of them in
silence). The bar counts replies; it goes to a terminal only (tqdm's default), so logs and tests stay quiet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def greedy_replies(target: Any, convs: Sequence[Any], max_new_tokens: int, desc: str,
                   show: bool | None = None) -> list[Any]:
    """Greedy replies (Generations) in input order. Prompts go in by length, so a batch pads little, and in slices
    of the target's ``batch_size``: the batches ``target.generate`` cuts itself, so the replies are those of one
    call. ``show``: None draws the bar on a terminal only, True always, False never."""
    from tqdm.auto import tqdm

    from safeglass.types import GenerationParams

    params = GenerationParams(max_new_tokens=max_new_tokens)
    order = sorted(range(len(convs)), key=lambda i: (sum(len(t.text) for t in convs[i]), i))
    size = max(1, int(getattr(target, "batch_size", 1) or 1))
    out: list[Any] = [None] * len(convs)
    with tqdm(total=len(order), desc=desc, unit="reply", disable=None if show is None else not show,
              dynamic_ncols=True) as bar:
        for start in range(0, len(order), size):
            part = order[start:start + size]
            for i, g in zip(part, target.generate([convs[i] for i in part], params), strict=True):
                out[i] = g
            bar.update(len(part))
    return out
