"""Each strategy against its paper's definition, with tests that could fail: the reservoir's uniform distribution,
DER++'s stored and replayed logits, A-GEM's projection, GDumb's balanced memory, ER-ACE's masking, LwF's
distillation, ESRM's entropy memory and InfoNCE, and the entropy gate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from safeglass.continual.buffers import ClassBalanced, EntropyReservoir, Reservoir
from safeglass.continual.mitigation import EntropyGate
from safeglass.continual.strategies import BASELINES, STRATEGIES, Settings, build, known
from safeglass.continual.strategies.esrm import info_nce
from safeglass.continual.strategies.regularise import agem_project

S = Settings(hidden=16, buffer_size=20, replay_batch=8, batch_size=8, epochs=1, lr=0.1)


def batch(n: int = 8, dim: int = 6, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_reservoir_keeps_every_offered_sample_with_equal_probability() -> None:
    # 30 offers into 10 slots, 1,500 independent runs: each sample's inclusion count ~ uniform (chi-square test)
    counts = np.zeros(30)
    for run in range(1500):
        r = Reservoir(10, 1, 2, seed=run)
        for i in range(30):
            r.add(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), np.array([i]))
        counts[r.ids] += 1
    assert counts.sum() == 1500 * 10
    assert stats.chisquare(counts).pvalue > 0.001
    # and a memory that kept only the first samples fails that same test
    assert stats.chisquare(np.r_[np.full(10, 1500.0), np.zeros(20)] + 1).pvalue < 1e-6


def test_class_balanced_memory_stays_balanced_on_an_imbalanced_stream() -> None:
    m = ClassBalanced(20, 1, 4, seed=0)
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.zeros(200), rng.integers(1, 4, 60)]).astype(int)  # class 0 first and dominant
    for i, c in enumerate(labels):
        m.add(torch.zeros(1, 1), torch.tensor([c]), np.array([i]))
    counts = m.class_counts(4)
    assert counts.sum() == 20 and counts.max() - counts.min() <= 1
    r = Reservoir(20, 1, 4, seed=0)
    for i, c in enumerate(labels):
        r.add(torch.zeros(1, 1), torch.tensor([c]), np.array([i]))
    assert r.class_counts(4).max() - r.class_counts(4).min() > 1  # the plain reservoir follows the stream instead


def test_derpp_stores_the_logits_it_saw_and_replays_them() -> None:
    s = build("derpp", 6, 4, S, seed=0)
    x, y = batch(8)
    with torch.no_grad():
        seen = s.model(x)
    s.observe(x, y, np.arange(8), last_epoch=True)   # trains, then stores the updated model's logits
    with torch.no_grad():
        after = s.model(x)
    stored = {int(i): s.memory.logits[k] for k, i in enumerate(s.memory.ids[: len(s.memory)])}
    assert all(torch.allclose(stored[i], after[i], atol=1e-6) for i in stored)
    assert not torch.allclose(after, seen)
    # replay: with beta 0 and the memory's logits made the model's own, the alpha term contributes no gradient; with
    # other stored logits the same step moves the weights differently
    def step(alpha: float, shift: float) -> torch.Tensor:
        t = build("derpp", 6, 4, Settings(**{**S.__dict__, "derpp_alpha": alpha, "derpp_beta": 0.0}), seed=0)
        t.memory.add(x, y, np.arange(8), logits=t.model(x).detach() + shift)
        t.observe(*batch(8, seed=1), np.arange(8), last_epoch=False)
        return torch.cat([p.flatten() for p in t.model.parameters()])
    assert torch.allclose(step(1.0, 0.0), step(0.0, 0.0), atol=1e-6)
    assert not torch.allclose(step(1.0, 5.0), step(0.0, 5.0), atol=1e-4)


def test_agem_projection_formula_and_sign() -> None:
    g_ref = torch.tensor([1.0, 0.0, 2.0])
    g = torch.tensor([-3.0, 1.0, 0.5])          # dot = -2 < 0
    p = agem_project(g, g_ref)
    assert torch.allclose(p, g - (-2.0 / 5.0) * g_ref)
    assert torch.dot(p, g_ref) >= -1e-6 and abs(float(torch.dot(p, g_ref))) < 1e-6
    ok = torch.tensor([1.0, 5.0, 0.0])
    assert torch.equal(agem_project(ok, g_ref), ok)
    for seed in range(50):
        a, b = torch.randn(20, generator=torch.Generator().manual_seed(seed)), torch.randn(20)
        assert float(torch.dot(agem_project(a, b), b)) >= -1e-5


def test_agem_step_does_not_raise_the_memory_loss_to_first_order() -> None:
    s = build("agem", 6, 4, Settings(**{**S.__dict__, "lr": 0.01}), seed=0)
    xm, ym = batch(16, seed=2)
    s.memory.add(xm, ym, np.arange(16))
    s.task = 1
    before = [p.detach().clone() for p in s.model.parameters()]
    g_ref = s._grad(s.ce(s.model(xm), ym))
    s.observe(*batch(8, seed=3), np.arange(8), last_epoch=False)
    update = torch.cat([(p.detach() - b).flatten() for p, b in zip(s.model.parameters(), before)])
    # the update is -lr * projected g; its dot with g_ref is <= 0, i.e. the projected gradient's dot with g_ref >= 0
    assert float(torch.dot(-update, g_ref)) >= -1e-7


def test_er_ace_stream_loss_leaves_absent_classes_alone_after_the_first_task() -> None:
    s = build("er_ace", 6, 4, S, seed=0)
    s.task = 1
    x = batch(8)[0]
    y = torch.tensor([2, 3] * 4)
    before = s.model.head.bias.detach().clone()
    s.observe(x, y, np.arange(8), last_epoch=False)     # empty memory: the stream term only
    moved = (s.model.head.bias.detach() - before).abs()
    assert moved[0] == 0 and moved[1] == 0 and moved[2] > 0 and moved[3] > 0
    f = build("finetune", 6, 4, S, seed=0)
    f.observe(x, y, np.arange(8), last_epoch=False)
    assert (f.model.head.bias.detach() - before)[:2].abs().min() > 0  # plain CE pushes the absent classes down


def test_lwf_distils_the_old_model_on_old_classes() -> None:
    s = build("lwf", 6, 4, Settings(**{**S.__dict__, "lwf_lambda": 0.0}), seed=0)
    t = build("lwf", 6, 4, Settings(**{**S.__dict__, "lwf_lambda": 10.0}), seed=0)
    for m in (s, t):
        m.before_task(0, (0, 1))
        m.observe(*batch(8, seed=4), np.arange(8), last_epoch=False)
        m.after_task(0)
        m.before_task(1, (2, 3))
    x = batch(32, seed=5)[0]
    y = torch.tensor([2, 3] * 16)
    for _ in range(30):
        s.observe(x, y, np.arange(32), last_epoch=False)
        t.observe(x, y, np.arange(32), last_epoch=False)

    def drift(m) -> float:
        with torch.no_grad():
            return float((torch.log_softmax(m.model(x)[:, :2], 1) - torch.log_softmax(m.old(x)[:, :2], 1)).abs().mean())
    assert drift(t) < drift(s)


def test_gdumb_predicts_with_a_model_trained_on_its_memory_only() -> None:
    s = build("gdumb", 6, 4, Settings(**{**S.__dict__, "hidden": 64, "lr": 0.5, "gdumb_epochs": 300}), seed=0)
    w0 = s.model.head.weight.detach().clone()
    x, y = batch(40, seed=6)
    s.before_task(0, (0, 1, 2, 3))
    s.observe(x, y, np.arange(40), last_epoch=True)
    assert torch.equal(s.model.head.weight, w0)  # observing only fills the memory
    counts = s.memory.class_counts(4)
    assert counts.sum() >= 19 and counts.max() - counts.min() <= 1
    s.after_task(0)
    xm, ym = s.memory.x[: len(s.memory)], s.memory.y[: len(s.memory)]
    assert float((s.predict(xm).argmax(1) == ym).float().mean()) > 0.8


def test_entropy_memory_evicts_the_most_confident_slot_of_the_drawn_class() -> None:
    m = EntropyReservoir(4, 1, 2, seed=0)
    m.add(torch.zeros(4, 1), torch.tensor([0, 0, 1, 1]), np.arange(4), scores=torch.tensor([0.9, 0.1, 0.5, 0.6]))
    assert m.ids.tolist() == [0, 1, 2, 3]
    m.rng = np.random.default_rng(1)
    evicted = []
    for i in range(4, 40):
        before = set(m.ids.tolist())
        m.add(torch.zeros(1, 1), torch.tensor([1]), np.array([i]), scores=torch.tensor([0.0 + i]))
        evicted += sorted(before - set(m.ids.tolist()))
    # id 1 (class 0, entropy 0.1) goes before id 0 (0.9); id 2 (class 1, 0.5) before id 3 (0.6)
    assert evicted.index(1) < evicted.index(0) if 0 in evicted else 1 in evicted
    if 2 in evicted and 3 in evicted:
        assert evicted.index(2) < evicted.index(3)
    # a reservoir would have evicted the drawn slot itself: over many draws ids 0 and 3 outlive 1 and 2 here
    counts = {i: 0 for i in range(4)}
    for seed in range(200):
        e = EntropyReservoir(4, 1, 2, seed=seed)
        e.add(torch.zeros(4, 1), torch.tensor([0, 0, 1, 1]), np.arange(4), scores=torch.tensor([0.9, 0.1, 0.5, 0.6]))
        for i in range(4, 8):
            e.add(torch.zeros(1, 1), torch.tensor([1]), np.array([i]), scores=torch.tensor([5.0]))
        for i in range(4):
            counts[i] += int(i in e.ids)
    assert counts[0] > counts[1] and counts[3] > counts[2]


def test_info_nce_matches_its_formula() -> None:
    a, k = torch.randn(3, 5), torch.randn(4, 5)
    ya, yk = torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1, 3])
    sim = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(k, dim=1).T / 0.07
    want = []
    for i in range(2):  # anchor 2 has no positive key and is left out
        pos = (yk == ya[i])
        want.append(-torch.log(sim[i][pos].exp().sum() / sim[i].exp().sum()))
    assert torch.allclose(info_nce(a, ya, k, yk, 0.07), torch.stack(want).mean(), atol=1e-5)


def test_entropy_gate_admits_the_high_entropy_part_of_each_class() -> None:
    g = EntropyGate(quantile=0.5, warmup=0)
    y = torch.tensor([0] * 10 + [1] * 10)
    ent = torch.cat([torch.arange(10.0), 100 + torch.arange(10.0)])
    keep = g.admit(y, ent)
    assert keep[:10].tolist() == [False] * 5 + [True] * 5   # per class: class 1's larger entropies do not crowd 0 out
    assert keep[10:].tolist() == [False] * 5 + [True] * 5
    warm = EntropyGate(quantile=0.5, warmup=50)
    assert bool(warm.admit(y, ent).all())
    with pytest.raises(ValueError):
        EntropyGate(quantile=1.0)


@pytest.mark.parametrize("name", [*STRATEGIES, "er+gate", "derpp+gate", "gdumb+gate"])
def test_every_strategy_learns_a_two_task_stream(name) -> None:
    from safeglass.continual.streams import digits, make_stream
    from safeglass.continual.train import learn

    stream = make_stream(digits(), 2, sampler=lambda c, n, s: np.full((n, 64), c / 10, np.float32), ratio=0.3, seed=0)
    settings = Settings(hidden=32, buffer_size=60, epochs=4, lr=0.2, gdumb_epochs=80)
    res = learn(stream, build(name, 64, 10, settings, seed=0), settings.epochs, settings.batch_size)
    r = np.array(res["matrix"])
    assert r.shape == (2, 2) and r[0, 0] > 0.5  # the first task is learnt
    if STRATEGIES.get(name.split("+")[0]) and name.split("+")[0] not in ("finetune", "lwf"):
        assert res["memory"] and 0 <= res["memory"][-1]["synthetic_share"] <= 1


def test_names_and_their_errors() -> None:
    assert set(BASELINES) <= set(STRATEGIES) and len(BASELINES) == 7
    assert known("er+gate") is None
    assert "did you mean" in known("derp")
    assert "keeps no memory" in known("lwf+gate")
    assert "plug-in" in known("er+oracle")
    with pytest.raises(ValueError):
        build("nope", 6, 4, S)
