"""The learning-rate curve of every recipe: linear warmup, then cosine decay to zero."""

from __future__ import annotations

import math


def warmup_steps(total: int, frac: float) -> int:
    """Warmup length for `total` steps; at least one, so the first step never runs at the full rate."""
    return max(1, int(frac * total))


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """The factor on the base rate at `step` (0-based): (step + 1) / warmup while warming up, so step 0 already
    moves the weights; then half a cosine from 1 at `warmup` towards 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
