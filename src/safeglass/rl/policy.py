"""The victim scheduler: an observation normaliser (running mean / variance, clipped) in front of a ReLU MLP that
scores every action (DQN Q-values); the action is the argmax. Saved as safetensors plus a JSON card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CLIP = 5.0  # normalised observations are clipped to +-CLIP (as in common RL normalisers)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class RunningNorm:
    """Running mean and variance (Chan et al.'s parallel update), as the victim's training saw its observations."""

    def __init__(self, dim: int) -> None:
        self.mean = np.zeros(dim)
        self.var = np.ones(dim)
        self.count = 1e-4

    def update(self, batch: np.ndarray) -> None:
        batch = np.atleast_2d(batch)
        b_mean, b_var, n = batch.mean(0), batch.var(0), batch.shape[0]
        delta, total = b_mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + b_var * n + delta ** 2 * self.count * n / total) / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + 1e-8)


class QPolicy(nn.Module):
    """Q(s) = MLP(clip((s - mean) / std, -CLIP, CLIP)). `mlp` is a plain nn.Sequential of Linear / ReLU (what the
    bounds read)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_actions))
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def set_norm(self, norm: RunningNorm) -> None:
        self.obs_mean.copy_(torch.as_tensor(norm.mean, dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(norm.std, dtype=torch.float32))

    def normalise(self, obs: torch.Tensor) -> torch.Tensor:
        return ((obs - self.obs_mean) / self.obs_std).clamp(-CLIP, CLIP)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.normalise(obs))

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> int:
        return int(self(torch.as_tensor(obs, dtype=torch.float32)[None]).argmax())


def save_policy(policy: QPolicy, folder: Path, card: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in policy.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")


def load_policy(folder: str | Path) -> tuple[QPolicy, dict[str, Any]]:
    """A saved victim (safetensors only, never a pickle) and its card."""
    from safetensors.torch import load_file

    folder = Path(folder)
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    state = load_file(str(folder / "model.safetensors"))
    policy = QPolicy(card["obs_dim"], card["n_actions"], card["hidden"])
    policy.load_state_dict(state)
    return policy.eval(), card


def packaged(name: str = "mumimo-dqn") -> Path:
    return WEIGHTS_DIR / name
