"""Each unlearning method lowers the refusal likelihood of the forget set on a tiny model taught to refuse."""

from __future__ import annotations

import pytest
from align_fixtures import aligned_tiny

from safeglass.align.measure import margins, refusal_loss
from safeglass.align.methods import METHODS
from safeglass.align.unlearn import MethodConfig, Unlearner


def mean(xs):
    return sum(xs) / len(xs)


def test_the_tiny_model_was_taught_to_refuse():
    from safeglass.targets.tiny import tiny_model_and_processor

    model, tok, data = aligned_tiny()
    raw, _ = tiny_model_and_processor("llama", seed=0)
    # taught: its refusals are far likelier than the untrained model's (a random byte model sits near ln 260)
    assert mean(refusal_loss(model, tok, data.forget)) < mean(refusal_loss(raw, tok, data.forget)) - 2.0
    assert all(m > 0 for m in margins(model, tok, data.forget))


@pytest.mark.parametrize("method", METHODS)
def test_each_method_lowers_the_refusal_likelihood(method):
    from safeglass.align.audit import refusal_prefixed

    model, tok, data = aligned_tiny()
    before = mean(refusal_loss(model, tok, data.forget))
    unl = Unlearner(model, tok, MethodConfig(name=method, lr=3e-3, batch_size=4), seed=0)
    pairs = refusal_prefixed(data.retain, 0) if method == "refusal_prefix" else data.forget
    unl.run(method, pairs, 8, retain=data.retain)
    after = mean(refusal_loss(unl.model, tok, data.forget))
    assert after > before + 0.02, (method, before, after)
    unl.reset()  # the adapter at its initialisation gives back the aligned model
    assert mean(refusal_loss(unl.model, tok, data.forget)) == pytest.approx(before, abs=1e-5)


def test_sft_on_the_refusals_raises_their_likelihood_and_snapshots_restore():
    model, tok, data = aligned_tiny()
    unl = Unlearner(model, tok, MethodConfig(name="sft", lr=3e-3, batch_size=4), seed=0)
    before = mean(refusal_loss(unl.model, tok, data.forget))
    unl.run("ga", data.forget, 4)
    forgot = unl.snapshot()
    ga_loss = mean(refusal_loss(unl.model, tok, data.forget))
    unl.run("sft", data.forget, 6)
    assert mean(refusal_loss(unl.model, tok, data.forget)) < ga_loss
    unl.restore(forgot)
    assert mean(refusal_loss(unl.model, tok, data.forget)) == pytest.approx(ga_loss, abs=1e-5)
    assert ga_loss > before


@pytest.mark.parametrize("method", ["gd", "rmu"])
def test_methods_with_a_retain_term_need_a_retain_set(method):
    model, tok, data = aligned_tiny()
    unl = Unlearner(model, tok, MethodConfig(name=method), seed=0)
    with pytest.raises(ValueError, match="retain"):
        unl.run(method, data.forget, 2)


def test_batches_are_a_function_of_seed_and_step():
    model, tok, _ = aligned_tiny()
    a = Unlearner(model, tok, MethodConfig(batch_size=3), seed=0)
    assert a.batches(10, 5, 1) == a.batches(10, 5, 1)
    epoch = [i for s in range(3) for i in a.batches(10, s, 1)]
    assert len(set(epoch)) == 9  # one epoch of 3 batches: no example twice


def test_wordings_add_distinct_refusals_of_the_same_prompt_seeded():
    from safeglass.align.data import with_wordings

    _, _, data = aligned_tiny()
    out = with_wordings(data.forget, 3, seed=0)
    assert out[0] == data.forget[0] and with_wordings(data.forget, 1, seed=0) == list(data.forget)
    for p in data.forget:
        mine = [q for q in out if q.id.split("~")[0] == p.id]
        assert 2 <= len(mine) <= 3 and {q.prompt for q in mine} == {p.prompt}
        assert len({q.answer for q in mine}) == len(mine)  # distinct wordings
    assert out == with_wordings(data.forget, 3, seed=0) and out != with_wordings(data.forget, 3, seed=1)


def test_unlearning_several_wordings_lowers_the_other_wordings_more_than_one():
    """NPO on one wording per prompt leaves the other wordings more likely than NPO on several of them."""
    from safeglass.align.data import with_wordings
    from safeglass.align.measure import answer_logprobs

    cfg = MethodConfig(name="npo", lr=1e-2, batch_size=4)
    held = {}
    for k in (1, 3):
        model, tok, data = aligned_tiny()
        unl = Unlearner(model, tok, cfg, seed=0)
        others = [q for q in with_wordings(data.forget, 3, seed=0) if "~" in q.id]
        unl.run("npo", with_wordings(data.forget, k, seed=0), 12, retain=data.retain, say=lambda s: None)
        held[k] = sum(s / n for s, n in answer_logprobs(unl.model, tok, others, answer_tokens=6)) / len(others)
    assert held[3] < held[1]
