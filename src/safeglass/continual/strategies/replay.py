"""DER++ (Buzzega et al. 2020: replay the stored logits and the labels) and ER-ACE (Caccia et al. 2022: the stream's
cross-entropy only over the classes in the incoming batch, so new classes do not push old logits down)."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from safeglass.continual.strategies.simple import ER


class DERpp(ER):
    name = "derpp"

    def observe(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray, last_epoch: bool) -> None:
        loss = self.ce(self.model(x), y)
        if len(self.memory):
            bx, _, blogits = self.replay()
            loss = loss + self.s.derpp_alpha * F.mse_loss(self.model(bx), blogits)
            bx2, by2, _ = self.replay()
            loss = loss + self.s.derpp_beta * self.ce(self.model(bx2), by2)
        self.step(loss)
        if last_epoch:
            self.offer(x, y, ids)  # stores the current logits with each admitted sample


class ERACE(ER):
    name = "er_ace"

    def observe(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray, last_epoch: bool) -> None:
        logits = self.model(x)
        if self.task > 0:
            present = torch.zeros(self.n_classes, dtype=torch.bool)
            present[y.unique()] = True
            logits = logits.masked_fill(~present, torch.finfo(logits.dtype).min)
        loss = self.ce(logits, y)
        r = self.replay()
        if r is not None:
            loss = loss + self.ce(self.model(r[0]), r[1])
        self.step(loss)
        if last_epoch:
            self.offer(x, y, ids)
