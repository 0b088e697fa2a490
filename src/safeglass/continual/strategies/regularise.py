"""LwF (Li & Hoiem 2016: distil the previous model's outputs on the old classes, no memory) and A-GEM (Chaudhry et
al. 2019: project the gradient so that the loss on a memory batch does not rise)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.nn import functional as F

from safeglass.continual.strategies.base import Strategy
from safeglass.continual.strategies.simple import ER


class LwF(Strategy):
    name = "lwf"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.old: torch.nn.Module | None = None
        self.old_classes: list[int] = []

    def observe(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray, last_epoch: bool) -> None:
        logits = self.model(x)
        loss = self.ce(logits, y)
        if self.old is not None and self.old_classes:
            with torch.no_grad():
                target = self.old(x)[:, self.old_classes]
            t = self.s.lwf_temperature
            loss = loss + self.s.lwf_lambda * t * t * F.kl_div(
                F.log_softmax(logits[:, self.old_classes] / t, 1), F.softmax(target / t, 1), reduction="batchmean")
        self.step(loss)

    def after_task(self, task: int) -> None:
        self.old = copy.deepcopy(self.model).eval()
        self.old_classes = list(self.seen_classes)


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM's rule: g when g . g_ref >= 0, else g - (g . g_ref / g_ref . g_ref) g_ref (whose dot with g_ref is 0)."""
    dot = torch.dot(g, g_ref)
    if dot >= 0:
        return g
    return g - dot / torch.dot(g_ref, g_ref).clamp_min(1e-12) * g_ref


class AGEM(ER):
    name = "agem"

    def _grad(self, loss: torch.Tensor) -> torch.Tensor:
        self.opt.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in self.model.parameters()])

    def observe(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray, last_epoch: bool) -> None:
        g = self._grad(self.ce(self.model(x), y))
        r = self.replay()
        if r is not None and self.task > 0:
            g_ref = self._grad(self.ce(self.model(r[0]), r[1]))
            g = agem_project(g, g_ref)
        self.opt.zero_grad()
        start = 0
        for p in self.model.parameters():
            p.grad = g[start:start + p.numel()].view_as(p).clone()
            start += p.numel()
        self.opt.step()
        if last_epoch:
            self.offer(x, y, ids)
