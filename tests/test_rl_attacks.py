"""Attacks on the packaged victim: each lowers the victim's throughput on a fixed seed, FGGM's certificate holds
on sampled observations of its box, reports respect the power and plausibility constraints, PGD lowers the margin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safeglass.rl.attacks import (
    bound_tightness,
    certified_margin,
    fggm,
    make_reporter,
    observation_box,
    pgd_reports,
    report_range,
    threat_of,
    to_raw,
)
from safeglass.rl.env import MuMimoEnv
from safeglass.rl.policy import load_policy, packaged
from safeglass.rl.run import env_config_of
from safeglass.rl.train import run_episode


@pytest.fixture(scope="module")
def victim():
    torch.set_num_threads(1)
    policy, card = load_policy(packaged("mumimo-dqn"))
    env_cfg = env_config_of(card, 120)
    threat = threat_of(MuMimoEnv(env_cfg))
    found = fggm(policy, threat, steps=25, starts=2, samples=2000, box_ks=(1.0, 0.5, 0.25))
    return policy, env_cfg, threat, found


def _victim_rate(policy, env_cfg, threat, kind, found, seed=7):
    universal = torch.tensor(found.reports_norm) if kind == "fggm" else None
    env = MuMimoEnv(env_cfg, reporter=make_reporter(kind, policy, threat, universal=universal, seed=seed))
    return run_episode(env, policy.act, seed)["per_user"][threat.victim]


def test_attacks_lower_the_victims_throughput(victim):
    policy, env_cfg, threat, found = victim
    clean = _victim_rate(policy, env_cfg, threat, "none", found)
    assert clean > 0.5
    for kind in ("greedy", "fggm"):
        assert _victim_rate(policy, env_cfg, threat, kind, found) < 0.8 * clean, kind


def test_the_fggm_certificate_holds_on_its_box(victim):
    policy, _, threat, found = victim
    assert found.certified and found.certified_box_k > 0
    assert found.ibp_margin < found.certified_margin  # intervals cannot certify what CROWN does, or only worse
    from safeglass.rl.attacks import Threat

    t = Threat(**{**threat.__dict__, "box_k": found.certified_box_k})
    lo, hi = observation_box(policy, t)
    x = lo + (hi - lo) * torch.rand(10000, lo.shape[0], generator=torch.Generator().manual_seed(0))
    x[:, threat.controlled] = torch.tensor(found.reports_norm)
    with torch.no_grad():
        chosen = policy.mlp(x).argmax(1)
    served = [threat.victim in threat.actions[int(a)] for a in chosen]
    assert not any(served)
    with torch.no_grad():
        target = torch.tensor([threat.actions.index(tuple(found.target_action))])
        m = certified_margin(policy, t, torch.tensor(found.reports_norm)[None], target, (lo, hi))
    assert float(m[0]) > 0


def test_reports_respect_power_and_plausibility(victim):
    policy, _, threat, _ = victim
    from safeglass.rl.attacks import Threat

    capped = Threat(**{**threat.__dict__, "max_gain_db": 0.0})
    lo, hi = report_range(policy, capped)
    assert np.all(to_raw(policy, capped, hi) <= 0.0 + 1e-5)
    lo2, hi2 = report_range(policy, threat)
    mean, std = policy.obs_mean[list(threat.adversaries)], policy.obs_std[list(threat.adversaries)]
    assert torch.all(hi2 * std + mean <= mean + threat.plausible_k * std + 1e-5)
    env = MuMimoEnv(env_config_of(load_policy(packaged("mumimo-dqn"))[1], 20),
                    reporter=make_reporter("random", policy, capped, seed=1))
    env.reset(seed=1)
    for _ in range(5):
        env.step(0)
        gains = (np.abs(env.h_reported[list(threat.adversaries)]) ** 2).sum(1)
        assert np.all(10 * np.log10(gains) <= 1e-4)


def test_pgd_pushes_the_victim_off(victim):
    policy, env_cfg, threat, _ = victim
    env = MuMimoEnv(env_cfg)
    obs, _ = env.reset(seed=3)
    v, o = threat.victim_actions(), threat.other_actions()
    x = policy.normalise(torch.as_tensor(obs))

    @torch.no_grad()
    def margin(z):
        xx = x.clone()
        xx[threat.controlled] = z
        q = policy.mlp(xx)
        return float(q[v].max() - q[o].max())

    z = pgd_reports(policy, threat, obs)
    assert margin(z) <= margin(x[threat.controlled]) + 1e-6
    assert margin(z) < 0


def test_the_victims_bounds_are_sound_on_10000_observations_and_crown_is_tighter(victim):
    policy, _, threat, _ = victim
    b = bound_tightness(policy, threat, n=10000)
    assert b["crown_violations"] == 0 and b["ibp_violations"] == 0
    assert b["sampled_mean_range"] <= b["crown_mean_width"] < b["ibp_mean_width"]


def test_over_claiming_pgd_never_reports_below_the_true_gain(victim):
    policy, env_cfg, threat, _ = victim
    env = MuMimoEnv(env_cfg)
    obs, _ = env.reset(seed=4)
    z = pgd_reports(policy, threat, obs, over_claim=True)
    true = policy.normalise(torch.as_tensor(obs))[threat.controlled]
    _, r_hi = report_range(policy, threat)
    assert torch.all(z >= torch.minimum(true, r_hi) - 1e-6)
