"""The learner: a small MLP over flattened images, one output per class (one head; a task-incremental scenario
masks it to the task's classes)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, dim: int, n_classes: int, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        body: list[nn.Module] = []
        width = dim
        for _ in range(layers):
            body += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*body)
        self.head = nn.Linear(width, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Predictive entropy (nats) of each row's softmax."""
    logp = torch.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)
