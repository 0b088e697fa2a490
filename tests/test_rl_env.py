"""The MU-MIMO environment against hand computations: ZF nulls inter-user interference, the rates and both rewards
of a tiny orthogonal case, seeding, and lies entering through the reports only."""

from __future__ import annotations

import numpy as np
import pytest

from safeglass.rl.env import EnvConfig, MuMimoEnv, action_table, zf_precoders


def test_zf_nulls_interference_between_scheduled_users():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
    w = zf_precoders(h)
    cross = h @ w
    assert np.allclose(np.linalg.norm(w, axis=0), 1.0)
    assert np.allclose(cross - np.diag(np.diag(cross)), 0, atol=1e-10)
    assert np.all(np.abs(np.diag(cross)) > 1e-3)


def test_rates_and_rewards_by_hand_for_two_orthogonal_users():
    cfg = EnvConfig(antennas=2, users=2, max_users=2, adversaries=(1,), victim=0, gains_db=(0.0, 0.0),
                    snr_db=10.0, reward="sum_rate")
    env = MuMimoEnv(cfg)
    env.reset(seed=0)
    env.h = np.array([[2.0, 0.0], [0.0, 1j]])  # orthogonal: |h_0|^2 = 4, |h_1|^2 = 1
    env.h_reported = env.h.copy()
    both = env.actions.index((0, 1))
    _, reward, _, _, info = env.step(both)
    # power 10 split in two, no interference: log2(1 + 5 * 4) and log2(1 + 5 * 1)
    expect = np.array([np.log2(21.0), np.log2(6.0)])
    assert np.allclose(info["rates"], expect)
    assert reward == pytest.approx(expect.sum())

    pf = MuMimoEnv(EnvConfig(**{**cfg.__dict__, "reward": "pf"}))
    pf.reset(seed=0)
    pf.h = np.array([[2.0, 0.0], [0.0, 1j]])
    pf.h_reported = pf.h.copy()
    _, reward, _, _, _ = pf.step(pf.actions.index((0,)))
    # only user 0, full power: log2(41); averages 1 -> 0.95 + 0.05 * rate; PF utility increase / 0.05
    r0 = np.log2(41.0)
    new = np.array([0.95 + 0.05 * r0, 0.95])
    expect_pf = (np.log(new + 0.05) - np.log(np.array([1.0, 1.0]) + 0.05)).sum() / 0.05
    assert reward == pytest.approx(expect_pf)
    assert np.allclose(pf.avg, new)


def test_a_lie_moves_the_observation_not_the_true_channel():
    lie = np.array([10.0, 0, 0, 0])
    env = MuMimoEnv(EnvConfig(), reporter=lambda e: {4: lie})
    obs, _ = env.reset(seed=3)
    truth = MuMimoEnv(EnvConfig())
    obs_t, _ = truth.reset(seed=3)
    assert np.allclose(env.h, truth.h)
    assert obs[4] == pytest.approx(2.0) and obs_t[4] != pytest.approx(2.0)
    assert np.allclose(np.delete(obs, 4), np.delete(obs_t, 4))
    # ZF is built on the reports: a mis-reported direction leaves the liar's true channel in the other beam's
    # interference (the truthful one is nulled exactly)
    leak = abs(env.h[4] @ zf_precoders(env.h_reported[[0, 4]])[:, 0])
    honest = abs(env.h[4] @ zf_precoders(env.h[[0, 4]])[:, 0])
    assert honest < 1e-9 < leak


def test_seeded_and_correlated_channels():
    a, b = MuMimoEnv(EnvConfig()), MuMimoEnv(EnvConfig())
    a.reset(seed=5)
    b.reset(seed=5)
    for _ in range(3):
        oa, *_ = a.step(0)
        ob, *_ = b.step(0)
    assert np.array_equal(oa, ob)
    # Gauss-Markov: consecutive slots correlate at about rho
    env = MuMimoEnv(EnvConfig(rho=0.9, correlation=0.0, gains_db=(0.0,) * 6))
    env.reset(seed=1)
    prev, corr = env.h.copy(), []
    for _ in range(400):
        env.step(0)
        corr.append(np.real(np.vdot(prev, env.h)) / np.vdot(prev, prev).real)
        prev = env.h.copy()
    assert 0.8 < np.mean(corr) < 1.0
    assert len(action_table(6, 2)) == 21


def test_config_is_checked():
    with pytest.raises(ValueError, match="gains_db"):
        EnvConfig(users=3)
    with pytest.raises(ValueError, match="distinct"):
        EnvConfig(victim=4)


def test_an_over_claimed_channel_loses_the_packet_and_truth_delivers_the_true_rate():
    from safeglass.rl.env import delivered_rates, slot_rates

    rng = np.random.default_rng(2)
    h = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
    assert np.allclose(delivered_rates(h, h, [0, 2], 10.0), slot_rates(h, h, [0, 2], 10.0))
    lie = h.copy()
    lie[2] *= 3.0  # same direction, 9x the gain: ZF beams unchanged, user 0 unaffected, user 2's packet lost
    got = delivered_rates(h, lie, [0, 2], 10.0)
    assert got[2] == 0.0 and got[0] == pytest.approx(slot_rates(h, h, [0, 2], 10.0)[0])
    under = h.copy()
    under[2] *= 0.5  # under-claiming delivers the (smaller) promised rate
    assert 0 < delivered_rates(h, under, [0, 2], 10.0)[2] < slot_rates(h, h, [0, 2], 10.0)[2]
