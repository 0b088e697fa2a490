"""`safeglass rl attack`: the attack suite on the victim scheduler, one JSON result with provenance out.

Per evaluation seed and attack, one episode on the same channel realisation (the fading draws do not depend on
the schedule, so seeds pair the attacks with the truthful run). The victim's throughput reduction per seed is
1 - attacked / truthful; the summary gives its mean over seeds with a bootstrap interval. Resumable: every finished
(attack, seed) episode is a line of OUT/episodes.jsonl, and FGGM's universal report is OUT/fggm.json; a rerun reads
both and runs only what is missing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safeglass.rl.attacks import Threat, bound_tightness, fggm, make_reporter, threat_of
from safeglass.rl.config import RlConfig
from safeglass.rl.env import EnvConfig, MuMimoEnv
from safeglass.rl.policy import QPolicy, load_policy, packaged
from safeglass.rl.train import DqnConfig, run_episode, train_and_save
from safeglass.stats import paired_bootstrap

FORMAT = "safeglass.rl/1"
RESULT_JSON = "rl-attack.json"


def _say(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    return progress or (lambda _line: None)


def victim_of(cfg: RlConfig, out: Path, say: Callable[[str], None]) -> tuple[QPolicy, dict[str, Any], Path]:
    v = cfg.victim
    if "train" in v:
        folder = out / "victim"
        if not (folder / "card.json").exists():
            say(f"rl attack: training the victim ({v['train']['steps']} steps)")
            train_and_save(folder, EnvConfig(), DqnConfig(steps=v["train"]["steps"], seed=v["train"]["seed"]),
                           [11, 12, 13], progress=say)
    else:
        folder = packaged(v["packaged"]) if "packaged" in v else Path(v["path"])
    policy, card = load_policy(folder)
    return policy, card, folder


def env_config_of(card: dict[str, Any], horizon: int) -> EnvConfig:
    e = {k: tuple(x) if isinstance(x, list) else x for k, x in card["env"].items()}
    return EnvConfig(**{**e, "horizon": horizon})


def _episodes(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    if not path.exists():
        return {}
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by an interrupted run: that episode runs again
        rows[(r["attack"], r["seed"])] = r
    return rows


def attack_suite(cfg: RlConfig, out: str | Path, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from safeglass.training.cards import versions

    say = _say(progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    t_start = time.time()
    policy, card, folder = victim_of(cfg, out, say)
    env_cfg = env_config_of(card, cfg.eval["horizon"])
    env = MuMimoEnv(env_cfg)
    threat: Threat = threat_of(env, **cfg.threat)
    seconds: dict[str, float] = {"victim_train": float(card.get("train_seconds", 0.0)) if "train" in cfg.victim
                                 else 0.0}

    fggm_path = out / "fggm.json"
    universal = None
    if "fggm" in cfg.attacks:
        if fggm_path.exists() and json.loads(fggm_path.read_text())["config_hash"] == cfg.hash:
            found = json.loads(fggm_path.read_text())
        else:
            t0 = time.time()
            say("rl attack: fggm search (CROWN-guided universal report)")
            res = fggm(policy, threat, steps=cfg.fggm["steps"], starts=cfg.fggm["starts"], seed=cfg.seed,
                       samples=cfg.fggm["samples"], box_ks=tuple(cfg.fggm["box_ks"]))
            found = {**res.__dict__, "seconds": round(time.time() - t0, 1), "config_hash": cfg.hash}
            fggm_path.write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")
        say(f"rl attack: fggm reports {found['reports_raw']} (log10 gain), target {found['target_action']}, "
            f"CROWN margin {found['certified_margin']:.3f} (IBP {found['ibp_margin']:.3f}) over box k "
            f"{found['box_k']}, certified up to box k {found['certified_box_k']}, "
            f"sampled success {found['sampled_success']:.3f}")
        universal = torch.tensor(found["reports_norm"], dtype=torch.float32)
        seconds["fggm_search"] = found["seconds"]

    t0 = time.time()
    bounds = bound_tightness(policy, threat, n=cfg.fggm["samples"], seed=cfg.seed)
    seconds["bounds"] = round(time.time() - t0, 1)
    say(f"rl attack: bounds over the box k {threat.box_k}: {bounds['crown_violations']} CROWN and "
        f"{bounds['ibp_violations']} interval violations in {bounds['samples']} samples; mean width CROWN "
        f"{bounds['crown_mean_width']} vs intervals {bounds['ibp_mean_width']} (sampled range "
        f"{bounds['sampled_mean_range']})")

    ep_path = out / "episodes.jsonl"
    done = {k: v for k, v in _episodes(ep_path).items() if v["config_hash"] == cfg.hash}
    todo = [(a, s) for a in cfg.attacks for s in cfg.eval["seeds"] if (a, s) not in done]
    say(f"rl attack: {len(done)} episodes done, {len(todo)} to run")
    for i, (attack, seed) in enumerate(todo):
        t0 = time.time()
        env = MuMimoEnv(env_cfg, reporter=make_reporter(attack, policy, threat, universal=universal, seed=seed,
                                                    pgd_steps=cfg.pgd["steps"], over_claim=cfg.pgd["over_claim"]))
        ep = run_episode(env, policy.act, seed)
        row = {"attack": attack, "seed": seed, "config_hash": cfg.hash, "per_user": ep["per_user"],
               "victim_rate": ep["per_user"][threat.victim], "sum_rate": ep["sum_rate"],
               "victim_series": ep["rates"][:, threat.victim].round(4).tolist(),
               "per_user_series": _smooth(ep["rates"]).round(4).tolist(), "seconds": round(time.time() - t0, 2)}
        with ep_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        done[(attack, seed)] = row
        say(f"rl attack: [{i + 1}/{len(todo)}] {attack} seed {seed}: victim {row['victim_rate']:.3f} bit/s/Hz, "
            f"sum {row['sum_rate']:.2f} ({row['seconds']:.1f} s)")
    seconds["episodes"] = round(sum(r["seconds"] for r in done.values()), 1)

    result = {"format": FORMAT, "name": cfg.name, "config_hash": cfg.hash, "config": cfg.raw, "seed": cfg.seed,
              "victim": {"folder": str(folder), "name": card["name"], "algorithm": card["algorithm"],
                         "weights_sha": _weights_hash(folder)},
              "env": env_cfg.as_dict(), "threat": threat.__dict__ | {"actions": None},
              "fggm": json.loads(fggm_path.read_text()) if universal is not None else None,
              "bounds": bounds, "summary": summarise(done, cfg, threat.victim), "seconds": seconds,
              "wall_seconds": round(time.time() - t_start, 1), "versions": versions("torch", "numpy")}
    (out / RESULT_JSON).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    from safeglass.rl.report import write_report

    write_report(result, done, out)
    return result


def _smooth(rates: np.ndarray, window: int = 20) -> np.ndarray:
    """Per-user moving average of the slot rates (the report's throughput-over-time curves)."""
    kernel = np.ones(window) / window
    return np.stack([np.convolve(rates[:, k], kernel, mode="valid") for k in range(rates.shape[1])], axis=1)


def _weights_hash(folder: Path) -> str:
    from safeglass.hashing import file_hash

    return file_hash(str(folder / "model.safetensors"))


def summarise(done: dict[tuple[str, int], dict[str, Any]], cfg: RlConfig, victim: int) -> dict[str, Any]:
    """Per attack: the victim's mean rate and the reduction against truthful reports, mean over seeds with a
    bootstrap interval (paired by seed)."""
    seeds = cfg.eval["seeds"]
    clean = [done[("none", s)]["victim_rate"] for s in seeds]
    out: dict[str, Any] = {}
    for attack in cfg.attacks:
        rates = [done[(attack, s)]["victim_rate"] for s in seeds]
        red = [1 - r / max(c, 1e-9) for r, c in zip(rates, clean)]
        ci = paired_bootstrap(red, [0.0] * len(red), seed=cfg.seed)
        out[attack] = {"victim_rate": round(float(np.mean(rates)), 4),
                       "sum_rate": round(float(np.mean([done[(attack, s)]["sum_rate"] for s in seeds])), 4),
                       "per_user": np.mean([done[(attack, s)]["per_user"] for s in seeds], axis=0).round(4).tolist(),
                       "reduction": round(ci["delta"], 4), "reduction_ci": [round(ci["ci_low"], 4),
                                                                           round(ci["ci_high"], 4)],
                       "reduction_per_seed": [round(x, 4) for x in red], "seeds": seeds}
    if "fggm" in out and "pgd" in out:
        out["fggm_gap_to_white_box_points"] = round(100 * (out["pgd"]["reduction"] - out["fggm"]["reduction"]), 2)
    return out


def table(result: dict[str, Any]) -> str:
    """The summary as a short text table."""
    s = result["summary"]
    lines = [f"{'attack':8} {'victim':>8} {'sum':>7} {'reduction [95% CI]':>26}"]
    for a, v in s.items():
        if isinstance(v, dict):
            lo, hi = v["reduction_ci"]
            lines.append(f"{a:8} {v['victim_rate']:8.3f} {v['sum_rate']:7.2f} "
                         f"{100 * v['reduction']:9.1f} % [{100 * lo:6.1f}, {100 * hi:6.1f}]")
    if "fggm_gap_to_white_box_points" in s:
        gap = s["fggm_gap_to_white_box_points"]
        lines.append(f"FGGM {abs(gap):.1f} points {'below' if gap > 0 else 'above'} white-box PGD's reduction")
    return "\n".join(lines)
