"""A pinned torch thread count for a block of work."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to `n` for the block, then restored. Recipes fix it per profile: the
    count decides how reductions split, so the same seed gives the same weights only on the same count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
