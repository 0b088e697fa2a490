"""GDumb (Prabhu et al. 2020): greedily keep a class-balanced memory; after each task train a fresh model on the
memory alone, and predict with it."""

from __future__ import annotations

import numpy as np
import torch

from safeglass.continual.buffers import ClassBalanced
from safeglass.continual.model import MLP
from safeglass.continual.strategies.base import Strategy


class GDumb(Strategy):
    name = "gdumb"
    uses_memory = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.memory = ClassBalanced(self.s.buffer_size, self.dim, self.n_classes, self.seed)

    def observe(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray, last_epoch: bool) -> None:
        if last_epoch:
            self.offer(x, y, ids)  # the learner itself never trains on the stream

    def after_task(self, task: int) -> None:
        torch.manual_seed(self.seed * 100 + task)
        self.model = MLP(self.dim, self.n_classes, self.s.hidden, self.s.layers)
        self.opt = self.make_optimizer(self.model)
        n = len(self.memory)
        x, y = self.memory.x[:n], self.memory.y[:n]
        rng = np.random.default_rng([self.seed, task, 4])
        for _ in range(self.s.gdumb_epochs):
            perm = torch.from_numpy(rng.permutation(n))
            for i in range(0, n, self.s.batch_size):
                b = perm[i:i + self.s.batch_size]
                self.step(self.ce(self.model(x[b]), y[b]))
