"""Per-example forgetting: the step each refusal flips, forgetting events, proxies and their rank correlation."""

from __future__ import annotations

import numpy as np
import pytest
from align_fixtures import aligned_tiny

from safeglass.align.forgetting import forgetting_steps, measure_forgetting, rankdata, spearman, subsets
from safeglass.align.unlearn import MethodConfig, Unlearner


def test_forgetting_steps_and_events_from_probes():
    history = [(0, [1.0, 0.5, -0.1, 0.2]),
               (2, [0.8, -0.2, -0.3, 0.1]),
               (4, [0.1, 0.3, -0.2, -0.1]),   # example 1 relearnt, example 3 flips
               (6, [-0.5, -0.1, -0.4, 0.2])]  # example 0 flips; example 1 forgets again; 3 back
    first, events = forgetting_steps(history, end=8)
    assert first == [6, 2, 0, 4]
    assert events == [1, 2, 0, 1]  # never held -> no 1 -> 0 transition for example 2


def test_forgetting_steps_of_an_example_that_never_flips_is_the_end():
    first, events = forgetting_steps([(0, [1.0]), (5, [0.5])], end=10)
    assert first == [10] and events == [0]


def test_spearman_matches_the_pearson_of_ranks_with_ties():
    assert rankdata([3, 1, 1, 2]).tolist() == [4.0, 1.5, 1.5, 3.0]
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(size=30)
    assert spearman(a, a * 3 + 1) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    ra, rb = rankdata(a), rankdata(b)
    assert spearman(a, b) == pytest.approx(float(np.corrcoef(ra, rb)[0, 1]))
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_subsets_are_the_ends_of_the_ranking_and_a_seeded_draw():
    ranking = [f"e{i}" for i in range(10)]
    s = subsets(ranking, 3, seed=0)
    assert s["easy"] == ["e0", "e1", "e2"] and s["hard"] == ["e7", "e8", "e9"]
    assert len(set(s["random"])) == 3 and set(s["random"]) <= set(ranking)
    assert s["random"] == subsets(ranking, 3, seed=0)["random"]


def test_a_measured_forgetting_run_counts_flips_and_ranks_easy_to_hard():
    model, tok, data = aligned_tiny()
    unl = Unlearner(model, tok, MethodConfig(name="ga", lr=1e-2, batch_size=4), seed=0)
    res = measure_forgetting(unl, data.forget, data.retain, "ga", steps=12, every=2, say=lambda s: None)
    steps = [e["forgetting_step"] for e in res["examples"]]
    assert res["flipped"] >= 1  # gradient ascent flips at least one refusal in 12 steps
    assert all(0 < s <= res["never_flipped_step"] for s in steps)  # all held at step 0 (the model refuses)
    assert res["flipped"] == sum(s < res["never_flipped_step"] for s in steps)
    by_id = {e["id"]: e["forgetting_step"] for e in res["examples"]}
    order = [by_id[i] for i in res["ranking_easy_to_hard"]]
    assert order == sorted(order)
    assert set(res["spearman"]) == {"loss", "likelihood", "margin"}  # no base given: no memorisation
    curve = [p["flipped"] for p in res["curve"]]
    assert curve[0] == 0 and curve[-1] >= 1
    # the adapter is reset afterwards: the model refuses again as before
    from safeglass.align.measure import margins

    assert all(m > 0 for m in margins(unl.model, tok, data.forget))


def test_a_margin_over_several_refusal_openings_is_the_best_of_the_single_ones():
    from safeglass.align.measure import prompt_margins

    model, tok, data = aligned_tiny()
    prompts = [p.prompt for p in data.heldout]
    openers = ("I'm sorry, but I can't", "I won't help with this")
    single = [prompt_margins(model, tok, prompts, (o,)) for o in openers]
    both = prompt_margins(model, tok, prompts, openers)
    for i, b in enumerate(both):
        assert b == pytest.approx(max(s[i] for s in single), abs=1e-5)


def test_with_openers_an_example_refused_in_another_wording_still_holds():
    """Unlearning one refusal wording while the model keeps another must not count as forgetting."""
    from safeglass.align.measure import Pair, margins

    model, tok, data = aligned_tiny()
    other = tuple(sorted({" ".join(p.answer.split()[:4]) for p in data.forget}))  # the openings it was taught
    # each example's "own" refusal replaced by a wording the model never learnt: alone it does not hold
    foreign = [Pair(p.id, p.prompt, "Zq xv wk jj qq") for p in data.forget]
    alone = margins(model, tok, foreign)
    with_other = margins(model, tok, foreign, openers=other)
    assert all(w > a for a, w in zip(alone, with_other))
    assert sum(w >= 0 for w in with_other) > sum(a >= 0 for a in alone)


def test_shared_prompt_scoring_equals_one_full_pass_per_opening():
    """The cached path (prompts once, left-padded, every opening continuing the cache) gives the log-probabilities
    of the plain right-padded teacher-forced pass."""
    from safeglass.align.measure import Pair, answer_logprobs, opening_logprobs

    model, tok, data = aligned_tiny()
    prompts = [p.prompt for p in data.forget] + [p.prompt for p in data.heldout]  # prompts of different lengths
    openings = ["I'm sorry, but I can't", "Sure, here is", "No"]
    fast = opening_logprobs(model, tok, prompts, openings, batch=5)
    for o, row in zip(openings, fast):
        slow = answer_logprobs(model, tok, [Pair(str(i), p, o) for i, p in enumerate(prompts)], answer_tokens=6,
                               eos=False)
        assert row == pytest.approx([s / n for s, n in slow], abs=1e-4)
