"""A MU-MIMO downlink scheduling environment in numpy, Gymnasium-style (reset / step), seeded.

A base station with M antennas serves K single-antenna users. Each slot every user reports its channel (CSI); the
scheduler picks a subset of at most `max_users` users; the base station zero-forces the picked users' *reported*
channels and splits its power equally; each picked user then receives log2(1 + SINR) over its *true* channel. A user
that lies about its channel is an adversary: the env asks `reporter` (an attack) for the adversaries' reports.

Channels: Rayleigh with exponential antenna correlation (r^|i-j|) and a per-user large-scale gain, moving over time
by a Gauss-Markov process h_t = rho h_{t-1} + sqrt(1 - rho^2) R^(1/2) w_t (rho from the users' speed, Jakes).

Link adaptation: the base station sends at the rate the reports promise; a packet the true channel cannot carry is
lost (so a user over-claiming its channel receives nothing, and its measured average stays low).

The observation per user: the reported channel gain in log10 (log10 ||h~_k||^2) and the user's average delivered
throughput (an exponential moving average, the proportional-fair state), users in order: 2K numbers.
Reward "pf": the increase of the proportional-fair utility sum_k log(avg_k + eps), divided by the EMA weight (so
its discounted sum follows long-run PF utility); "sum_rate": the slot's sum rate.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PF_EPS = 0.05  # keeps log(avg) finite for a user never served yet


@dataclass(frozen=True)
class EnvConfig:
    antennas: int = 4
    users: int = 6
    max_users: int = 2
    adversaries: tuple[int, ...] = (4, 5)
    victim: int = 0
    gains_db: tuple[float, ...] = (0.0, 3.0, -2.0, 5.0, 1.0, 1.0)  # large-scale gain per user (dB)
    snr_db: float = 10.0          # total transmit power over noise (dB)
    correlation: float = 0.5      # antenna correlation r (0: i.i.d. Rayleigh)
    rho: float = 0.9              # Gauss-Markov time correlation of the fading
    avg_weight: float = 0.05      # EMA weight of the delivered-throughput average
    reward: str = "pf"            # "pf" or "sum_rate"
    horizon: int = 200            # slots per episode

    def __post_init__(self) -> None:
        if len(self.gains_db) != self.users:
            raise ValueError(f"gains_db has {len(self.gains_db)} values for {self.users} users")
        if not 1 <= self.max_users <= min(self.antennas, self.users):
            raise ValueError(f"max_users must be in 1..min(antennas, users), got {self.max_users}")
        if any(not 0 <= a < self.users for a in (*self.adversaries, self.victim)) or self.victim in self.adversaries:
            raise ValueError("adversaries and victim must be distinct user indices")
        if self.reward not in ("pf", "sum_rate"):
            raise ValueError(f"reward must be 'pf' or 'sum_rate', got {self.reward!r}")

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def action_table(users: int, max_users: int) -> list[tuple[int, ...]]:
    """Every non-empty user subset of size <= max_users, smallest first (the discrete action space)."""
    return [c for n in range(1, max_users + 1) for c in itertools.combinations(range(users), n)]


def correlation_root(antennas: int, r: float) -> np.ndarray:
    """R^(1/2) of the exponential correlation matrix R_ij = r^|i-j|."""
    idx = np.arange(antennas)
    corr = r ** np.abs(idx[:, None] - idx[None, :])
    w, v = np.linalg.eigh(corr)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def zf_precoders(h_reported: np.ndarray) -> np.ndarray:
    """Zero-forcing beams (M x n, unit-norm columns) for n reported channels (n x M rows): column j is orthogonal
    to every reported row but j."""
    w = np.linalg.pinv(h_reported)
    return w / np.maximum(np.linalg.norm(w, axis=0, keepdims=True), 1e-12)


def slot_rates(h_true: np.ndarray, h_reported: np.ndarray, chosen: Sequence[int], power: float) -> np.ndarray:
    """Rate (bit/s/Hz) of each user this slot (0 for the unpicked): ZF on the reported channels of `chosen`, equal
    power power/|chosen| per beam, SINR over the true channels with unit noise."""
    rates = np.zeros(h_true.shape[0])
    chosen = list(chosen)
    w = zf_precoders(h_reported[chosen])
    p = power / len(chosen)
    gains = np.abs(h_true[chosen] @ w) ** 2  # [i, j]: user chosen[i] through beam j
    for i, k in enumerate(chosen):
        interference = p * (gains[i].sum() - gains[i, i])
        rates[k] = np.log2(1.0 + p * gains[i, i] / (1.0 + interference))
    return rates


def delivered_rates(h_true: np.ndarray, h_reported: np.ndarray, chosen: Sequence[int], power: float) -> np.ndarray:
    """What each user receives: the base station sends at the rate the reports promise (its MCS choice); a user
    whose true channel cannot carry that rate loses the slot's packet (0). Truthful reports deliver exactly the
    true rate; an over-claimed channel delivers nothing, so a liar's measured average stays low."""
    promised = slot_rates(h_reported, h_reported, chosen, power)
    capacity = slot_rates(h_true, h_reported, chosen, power)
    return np.where(promised <= capacity + 1e-9, promised, 0.0)


Reporter = Callable[["MuMimoEnv"], dict[int, np.ndarray]]


@dataclass
class MuMimoEnv:
    """reset(seed) -> (obs, info); step(action) -> (obs, reward, terminated, truncated, info)."""

    config: EnvConfig = field(default_factory=EnvConfig)
    reporter: Reporter | None = None  # the adversaries' lies: user -> reported channel (M complex), or None: truth

    def __post_init__(self) -> None:
        c = self.config
        self.actions = action_table(c.users, c.max_users)
        self.n_actions = len(self.actions)
        self.obs_dim = 2 * c.users
        self.power = 10 ** (c.snr_db / 10)
        self._root = correlation_root(c.antennas, c.correlation)
        self._scale = np.sqrt(10 ** (np.asarray(c.gains_db) / 10))[:, None]
        self.rng = np.random.default_rng(0)

    def _innovation(self) -> np.ndarray:
        c = self.config
        w = (self.rng.standard_normal((c.users, c.antennas)) + 1j * self.rng.standard_normal((c.users, c.antennas)))
        return self._scale * (w / np.sqrt(2)) @ self._root.T

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        self.h = self._innovation()
        self.avg = np.full(self.config.users, 1.0)
        self._report()
        return self.observation(), {}

    def _report(self) -> None:
        self.h_reported = self.h.copy()
        if self.reporter is not None:
            for k, row in self.reporter(self).items():
                if k not in self.config.adversaries:
                    raise ValueError(f"user {k} is not an adversary; only adversaries lie")
                self.h_reported[k] = row

    def observation(self) -> np.ndarray:
        gain = np.log10(np.maximum((np.abs(self.h_reported) ** 2).sum(axis=1), 1e-6))
        return np.concatenate([gain, self.avg]).astype(np.float32)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        c = self.config
        chosen = self.actions[int(action)]
        rates = delivered_rates(self.h, self.h_reported, chosen, self.power)
        new_avg = (1 - c.avg_weight) * self.avg + c.avg_weight * rates
        if c.reward == "pf":
            reward = float((np.log(new_avg + PF_EPS) - np.log(self.avg + PF_EPS)).sum() / c.avg_weight)
        else:
            reward = float(rates.sum())
        self.avg = new_avg
        self.t += 1
        self.h = c.rho * self.h + np.sqrt(1 - c.rho ** 2) * self._innovation()
        self._report()
        truncated = self.t >= c.horizon
        return self.observation(), reward, False, truncated, {"rates": rates, "chosen": chosen}

    def estimated_rates(self, chosen: Sequence[int]) -> np.ndarray:
        """The rates the base station expects from the reports alone (what the classic schedulers rank by)."""
        return slot_rates(self.h_reported, self.h_reported, chosen, self.power)


def greedy_action(env: MuMimoEnv) -> int:
    """Max expected sum rate over the action table (on reported CSI)."""
    return int(np.argmax([env.estimated_rates(a).sum() for a in env.actions]))


def pf_action(env: MuMimoEnv) -> int:
    """Classic proportional fair: max sum_k expected_rate_k / avg_k."""
    return int(np.argmax([(env.estimated_rates(a) / (env.avg + PF_EPS)).sum() for a in env.actions]))
