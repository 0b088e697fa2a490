"""Train the victim: double DQN with a replay buffer and a target network, on CPU in a couple of minutes.

The observation normaliser follows the observations during the first `norm_steps` steps, then freezes (a moving
normaliser under a learning Q-network chases its own inputs). The card records the training curve (PF utility and
throughput on a fixed evaluation episode) and the victim's throughput against the proportional-fair and greedy
schedulers on held-out seeds.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safeglass.rl.env import EnvConfig, MuMimoEnv, greedy_action, pf_action
from safeglass.rl.policy import QPolicy, RunningNorm, save_policy


@dataclass(frozen=True)
class DqnConfig:
    steps: int = 20000
    hidden: int = 64
    lr: float = 1e-3
    gamma: float = 0.5         # scheduling is nearly myopic: PF state moves slowly, the fading quickly
    batch: int = 64
    buffer: int = 20000
    warmup: int = 1000         # random steps before learning (they also seed the normaliser)
    norm_steps: int = 10000
    eps_end: float = 0.02
    eps_fraction: float = 0.4
    target_every: int = 250
    eval_every: int = 2000
    seed: int = 0


def run_episode(env: MuMimoEnv, choose: Callable[[np.ndarray], int], seed: int) -> dict[str, Any]:
    """One episode: mean reward, mean rate per user, and the per-slot rates (slots x users)."""
    obs, _ = env.reset(seed=seed)
    rewards, rates = [], []
    while True:
        obs, reward, term, trunc, info = env.step(choose(obs))
        rewards.append(reward)
        rates.append(info["rates"])
        if term or trunc:
            break
    r = np.asarray(rates)
    return {"reward": float(np.mean(rewards)), "per_user": r.mean(0).tolist(), "sum_rate": float(r.sum(1).mean()),
            "rates": r}


def evaluate_schedulers(policy: QPolicy, env_cfg: EnvConfig, seeds: list[int]) -> dict[str, Any]:
    """Mean per-user throughput and PF utility of the victim DQN, PF and greedy schedulers (truthful reports)."""
    out: dict[str, Any] = {}
    for name in ("dqn", "proportional_fair", "greedy"):
        env = MuMimoEnv(env_cfg)
        pick = {"dqn": policy.act, "proportional_fair": lambda _o, e=env: pf_action(e),
                "greedy": lambda _o, e=env: greedy_action(e)}[name]
        eps = [run_episode(env, pick, s) for s in seeds]
        per_user = np.mean([e["per_user"] for e in eps], axis=0)
        out[name] = {"per_user": per_user.round(4).tolist(), "sum_rate": round(float(per_user.sum()), 4),
                     "pf_utility": round(float(np.log(per_user + 1e-3).sum()), 4),
                     "reward": round(float(np.mean([e["reward"] for e in eps])), 5)}
    return out


def train_dqn(env_cfg: EnvConfig, cfg: DqnConfig, *, progress: Callable[[str], None] | None = None
              ) -> tuple[QPolicy, dict[str, Any]]:
    say = progress or (lambda _s: None)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env = MuMimoEnv(env_cfg)
    policy = QPolicy(env.obs_dim, env.n_actions, cfg.hidden)
    target = copy.deepcopy(policy)
    opt = torch.optim.Adam(policy.mlp.parameters(), lr=cfg.lr)
    norm = RunningNorm(env.obs_dim)
    obs_buf = np.zeros((cfg.buffer, env.obs_dim), np.float32)
    next_buf = np.zeros_like(obs_buf)
    act_buf = np.zeros(cfg.buffer, np.int64)
    rew_buf = np.zeros(cfg.buffer, np.float32)
    curve: list[dict[str, float]] = []
    obs, _ = env.reset(seed=cfg.seed + 1000)
    episode = 0
    t0 = time.time()
    for step in range(cfg.steps):
        if step < cfg.norm_steps:
            norm.update(obs[None])
            policy.set_norm(norm)
        eps = max(cfg.eps_end, 1 - step / (cfg.eps_fraction * cfg.steps))
        a = int(rng.integers(env.n_actions)) if step < cfg.warmup or rng.random() < eps else policy.act(obs)
        nxt, reward, term, trunc, _ = env.step(a)
        i = step % cfg.buffer
        obs_buf[i], act_buf[i], rew_buf[i], next_buf[i] = obs, a, reward, nxt
        obs = nxt
        if term or trunc:
            episode += 1
            obs, _ = env.reset(seed=cfg.seed + 1000 + episode)
        if step >= cfg.warmup:
            idx = rng.integers(min(step + 1, cfg.buffer), size=cfg.batch)
            o, n = torch.as_tensor(obs_buf[idx]), torch.as_tensor(next_buf[idx])
            with torch.no_grad():
                target.load_state_dict(policy.state_dict()) if step == cfg.warmup else None
                best = policy(n).argmax(1, keepdim=True)  # double DQN: online picks, target scores
                y = torch.as_tensor(rew_buf[idx]) + cfg.gamma * target(n).gather(1, best).squeeze(1)
            q = policy(o).gather(1, torch.as_tensor(act_buf[idx])[:, None]).squeeze(1)
            loss = torch.nn.functional.smooth_l1_loss(q, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % cfg.target_every == 0:
                target.load_state_dict(policy.state_dict())
        if (step + 1) % cfg.eval_every == 0:
            ev = run_episode(MuMimoEnv(env_cfg), policy.act, seed=99)
            curve.append({"step": step + 1, "reward": round(ev["reward"], 5), "sum_rate": round(ev["sum_rate"], 4),
                          "victim_rate": round(ev["per_user"][env_cfg.victim], 4),
                          "seconds": round(time.time() - t0, 1)})
            say(f"rl train: step {step + 1}/{cfg.steps} reward {ev['reward']:.4f} sum rate {ev['sum_rate']:.2f} "
                f"({time.time() - t0:.0f} s)")
    policy.set_norm(norm)
    return policy.eval(), {"curve": curve, "train_seconds": round(time.time() - t0, 1),
                           "norm_count": float(norm.count)}


def train_and_save(folder: Path, env_cfg: EnvConfig, cfg: DqnConfig, eval_seeds: list[int], *,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from safeglass.training.cards import versions

    torch.set_num_threads(1)
    policy, log = train_dqn(env_cfg, cfg, progress=progress)
    t0 = time.time()
    table = evaluate_schedulers(policy, env_cfg, eval_seeds)
    env = MuMimoEnv(env_cfg)
    card = {"name": folder.name, "algorithm": "double DQN", "obs_dim": env.obs_dim, "n_actions": env.n_actions,
            "hidden": cfg.hidden, "env": env_cfg.as_dict(), "dqn": asdict(cfg), **log,
            "eval_seeds": eval_seeds, "eval_seconds": round(time.time() - t0, 1), "throughput": table,
            "versions": versions("torch", "numpy")}
    save_policy(policy, folder, card)
    return card


def main() -> None:
    """Retrain the packaged victim: python -m safeglass.rl.train [--out src/safeglass/rl/weights/mumimo-dqn]."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "weights" / "mumimo-dqn"))
    p.add_argument("--steps", type=int, default=DqnConfig.steps)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    train_and_save(Path(a.out), EnvConfig(), DqnConfig(steps=a.steps, seed=a.seed), [11, 12, 13],
                   progress=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
