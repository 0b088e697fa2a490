"""The strategy base: the training loop is written once (`safeglass.continual.train.learn`); a strategy overrides
`observe` (one optimisation step on a stream batch) and, where it needs to, `before_task` / `after_task`.

Each stream sample is offered to the memory once, in the task's last epoch (after the model has learned the task,
so that the entropy a selection reads is meaningful); replay draws from the memory in every epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from safeglass.continual.model import MLP, entropy


@dataclass(frozen=True)
class Settings:
    hidden: int = 256
    layers: int = 2
    lr: float = 0.05
    momentum: float = 0.0
    batch_size: int = 32
    replay_batch: int = 32
    buffer_size: int = 200
    epochs: int = 5
    # strategy hyper-parameters (defaults: the papers' / Mammoth's values for small buffers)
    derpp_alpha: float = 0.3
    derpp_beta: float = 0.5
    lwf_lambda: float = 1.0
    lwf_temperature: float = 2.0
    gdumb_epochs: int = 30
    esrm_tau: float = 0.07
    esrm_weight: float = 0.1


class Strategy:
    name = "base"
    uses_memory = False

    def __init__(self, dim: int, n_classes: int, settings: Settings, seed: int = 0, scenario: str = "class",
                 task_classes: list[tuple[int, ...]] | None = None) -> None:
        torch.manual_seed(seed)
        self.dim, self.n_classes, self.s, self.seed, self.scenario = dim, n_classes, settings, seed, scenario
        self.model = MLP(dim, n_classes, settings.hidden, settings.layers)
        self.opt = self.make_optimizer(self.model)
        self.rng = np.random.default_rng([seed, 3])
        self.task = -1
        self.seen_classes: list[int] = []
        # task-incremental: each class's task, to mask logits to the classes of the sample's own task
        self.task_of = torch.zeros(n_classes, dtype=torch.long)
        self.task_mask = torch.ones(1, n_classes, dtype=torch.bool)
        if task_classes:
            self.task_mask = torch.zeros(len(task_classes), n_classes, dtype=torch.bool)
            for t, cls in enumerate(task_classes):
                self.task_of[list(cls)] = t
                self.task_mask[t, list(cls)] = True
        self.memory: Any = None
        self.gate: Any = None

    def make_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=self.s.lr, momentum=self.s.momentum)

    # -- helpers -----------------------------------------------------------------------------------------------
    def masked(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Task-incremental: logits outside the sample's task cannot win (the task id is given)."""
        if self.scenario != "task":
            return logits
        return logits.masked_fill(~self.task_mask[self.task_of[y]], -1e9)

    def ce(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.masked(logits, y), y)

    def step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    @torch.no_grad()
    def scores(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, entropy) of the current model, logits masked as the scenario asks."""
        logits = self.model(x)
        return logits, entropy(self.masked(logits, y))

    def offer(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray) -> None:
        """Offer stream samples to the memory, through the mitigation's gate when one is plugged in."""
        if self.memory is None:
            return
        logits, ent = self.scores(x, y)
        if self.gate is not None:
            keep = self.gate.admit(y, ent)
            x, y, ids, logits, ent = x[keep], y[keep], ids[keep.numpy()], logits[keep], ent[keep]
        if len(y):
            self.memory.add(x, y, ids, logits=logits, scores=ent)

    def replay(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        if self.memory is None or len(self.memory) == 0:
            return None
        return self.memory.sample(n or self.s.replay_batch, self.rng)

    # -- hooks ---------------------------------------------------------------------------------------------------
    def before_task(self, task: int, classes: tuple[int, ...]) -> None:
        self.task = task
        self.seen_classes += [c for c in classes if c not in self.seen_classes]

    def observe(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray, last_epoch: bool) -> None:
        raise NotImplementedError

    def after_task(self, task: int) -> None:
        return None

    def eval_model(self) -> torch.nn.Module:
        return self.model

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task: int | None = None) -> torch.Tensor:
        m = self.eval_model()
        m.eval()
        logits = m(x)
        m.train()
        if self.scenario == "task" and task is not None:
            logits = logits.masked_fill(~self.task_mask[task], -1e9)
        return logits
