"""Fine-tuning (the lower bound) and experience replay with a reservoir memory (Chaudhry et al. 2019)."""

from __future__ import annotations

import numpy as np
import torch

from safeglass.continual.buffers import Reservoir
from safeglass.continual.strategies.base import Strategy


class FineTune(Strategy):
    name = "finetune"

    def observe(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray, last_epoch: bool) -> None:
        self.step(self.ce(self.model(x), y))


class ER(Strategy):
    """One step on the stream batch joined with a replay batch drawn uniformly from the reservoir."""

    name = "er"
    uses_memory = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.memory = Reservoir(self.s.buffer_size, self.dim, self.n_classes, self.seed)

    def observe(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray, last_epoch: bool) -> None:
        r = self.replay()
        bx, by = (torch.cat([x, r[0]]), torch.cat([y, r[1]])) if r is not None else (x, y)
        self.step(self.ce(self.model(bx), by))
        if last_epoch:
            self.offer(x, y, ids)
