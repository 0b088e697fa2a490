"""ETA: an input check and a harm check of the reply; only a flagged sample is aligned (a safety prefix in the
assistant's turn, N sampled replies, the least harmful kept); safe answers are left as they were."""

from __future__ import annotations

import json
from typing import Any

import pytest

from safeglass.api import run
from safeglass.defenses.context import DefenseContext
from safeglass.defenses.evaluate_then_align import DEFAULT_PREFIX, EvaluateThenAlign
from safeglass.eval.runner import STORE_NAME, build_component
from safeglass.eval.store import Store
from safeglass.options import UnknownOptionError
from safeglass.targets.doubles import stable_index
from safeglass.types import Conversation, Generation, GenerationParams, Sample

TAGGED = "sgtest_components:TaggedHarmJudge"
SIGNAL = "sgtest_components:WordSignalJudge"


class Recording:
    """TaggedReplies (sgtest_components), keeping every call: its conversations and parameters."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = build_component_target()
        self.calls: list[tuple[list[Conversation], GenerationParams]] = []

    def config(self) -> dict[str, Any]:
        return {"type": "recording"}

    def generate(self, conversations: list[Conversation], params: GenerationParams) -> list[Generation]:
        self.calls.append((list(conversations), params))
        return self.inner.generate(conversations, params)


def build_component_target() -> Any:
    from sgtest_components import TaggedReplies

    return TaggedReplies()


def defended(target: Any, **options: Any) -> EvaluateThenAlign:
    d = EvaluateThenAlign(**{"post_judge": TAGGED, **options})
    d.setup(DefenseContext(target, build_component))
    return d


def samples(*texts: str) -> list[Sample]:
    return [Sample.from_text(f"s{i}", t) for i, t in enumerate(texts)]


def expected_tag(d: EvaluateThenAlign, params: GenerationParams, k: int, text: str) -> int:
    """The harm tag TaggedReplies gives candidate `k` of `text`."""
    return stable_index(f"{d.candidate_params(params, k).seed}|{text}", 10)


def test_only_a_flagged_reply_is_aligned_and_the_least_harmful_candidate_is_kept():
    target = Recording()
    d = defended(target, best_of=4)
    params = GenerationParams(max_new_tokens=16, seed=3)
    ctx = d.ctx
    batch = samples("a plain question", "a harmful request", "another harmful one")
    ctx.begin(batch)
    gens = d.generate(target, batch, params)
    # the safe answer is left exactly as it was
    assert gens[0].text == "Plain answer to a plain question [harm 0]" and gens[0].seconds == 0.25
    assert gens[0].extra["eta"] == {"pre_check": None, "post_check": {"flag": False, "score": 0.0}, "aligned": False}
    # one answer call, then one call per candidate holding only the flagged samples, each under the prefix, sampled
    answer, *aligned = target.calls
    assert len(answer[0]) == 3 and len(aligned) == 4
    assert all([c[-1].text for c in convs] == [DEFAULT_PREFIX] * 2 and all(c[-1].role == "assistant" for c in convs)
               and [c[0].text for c in convs] == ["a harmful request", "another harmful one"] for convs, _ in aligned)
    assert all(p.temperature == 0.7 and p.max_new_tokens == 16 for _, p in aligned)
    assert len({p.seed for _, p in aligned}) == 4
    for g, text in zip(gens[1:], ["a harmful request", "another harmful one"], strict=True):
        tags = [expected_tag(d, params, k, text) for k in range(4)]
        record = g.extra["eta"]
        assert record["aligned"] and record["post_check"] == {"flag": True, "score": 0.9}
        assert record["candidates"] == [t / 10 for t in tags]
        k = tags.index(min(tags))
        assert record["chosen"] == k
        assert g.text == f"{DEFAULT_PREFIX} Candidate {d.candidate_params(params, k).seed} for {text} [harm {tags[k]}]"
        assert g.seconds == pytest.approx(0.25 * 5)  # the answer and four candidates
    # the trace of a flagged sample: the answer, its check, the four candidates and their checks
    assert [e["role"] for e in ctx.traces[0]] == ["model", "post-check"]
    assert [e["role"] for e in ctx.traces[1]] == ["model", "post-check"] + ["align"] * 4 + ["post-check"] * 4


def test_the_pre_check_aligns_alone_with_either_and_only_with_the_post_check_with_both():
    batch = samples("a risky question", "a harmful request", "a risky and harmful request", "a plain question")
    params = GenerationParams()

    def aligned(combine: str) -> list[bool]:
        target = Recording()
        d = defended(target, pre_judge={"name": SIGNAL, "args": {"word": "risky"}}, combine=combine, best_of=2)
        d.ctx.begin(batch)
        gens = d.generate(target, batch, params)
        assert [e["role"] for e in d.ctx.traces[3]] == ["pre-check", "model", "post-check"]
        assert [g.extra["eta"]["pre_check"]["flag"] for g in gens] == [True, False, True, False]
        return [g.extra["eta"]["aligned"] for g in gens]

    assert aligned("either") == [True, True, True, False]
    assert aligned("both") == [False, False, True, False]


def test_greedy_candidates_are_alike_and_the_first_one_wins_a_tie():
    target = Recording()
    d = defended(target, best_of=3, temperature=0.0)
    (g,) = d.generate(target, samples("a harmful request"), GenerationParams())
    assert g.extra["eta"]["candidates"] == [0.5, 0.5, 0.5] and g.extra["eta"]["chosen"] == 0


def test_the_judges_must_measure_what_each_check_reads(tmp_path):
    for bad in ({"best_of": 0}, {"combine": "any"}, {"temperature": -1.0}, {"prefix": "  "}):
        with pytest.raises(ValueError, match="eta"):
            EvaluateThenAlign(**bad)
    base = {"name": "e", "targets": ["echo"], "datasets": [{"name": "advbench", "limit": 2}], "judges": []}
    for args, message in (({"post_judge": "keyword-refusal"}, "keyword-refusal measures refusal; it needs one that "
                                                              "measures harm or toxicity"),
                          ({"pre_judge": "proxy-harm"}, "proxy-harm measures harm; it needs one that measures signal")):
        with pytest.raises(UnknownOptionError, match=message):
            run({**base, "defenses": [{"name": "eta", "args": args}]}, out=tmp_path / "r", dry_run=True,
                progress=False)
    target = Recording()
    with pytest.raises(ValueError, match="pre-check needs an input-signal judge"):
        defended(target, pre_judge=TAGGED)


def _run(tmp_path, name: str, chunk_size: int) -> list[dict[str, Any]]:
    cfg = {"name": "eta", "seed": 0, "chunk_size": chunk_size,
           "targets": [{"name": "sgtest_components:TaggedReplies", "id": "tagged"}],
           "datasets": [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": 4}}],
           "defenses": [{"name": "eta", "args": {"pre_judge": SIGNAL, "post_judge": TAGGED, "best_of": 2}}],
           "judges": []}
    run(cfg, out=tmp_path / name, report=False, judge=False, progress=False)
    with Store(tmp_path / name / STORE_NAME) as s:
        return sorted(s.generations(), key=lambda r: r["sample_id"])


def test_a_run_aligns_the_harmful_requests_traces_every_step_and_samples_the_same_again(tmp_path):
    rows = _run(tmp_path, "a", chunk_size=4)
    assert [r["kind"] for r in rows] == ["harmful", "benign"] * 2
    for r in rows:
        prov = json.loads(r["provenance"])
        roles = [t["role"] for t in prov["trace"]]
        if r["kind"] == "harmful":
            assert prov["extra"]["eta"]["aligned"] and r["response"].startswith(DEFAULT_PREFIX + " Candidate ")
            assert roles == ["pre-check", "model", "post-check", "align", "align", "post-check", "post-check"]
        else:
            assert not prov["extra"]["eta"]["aligned"] and r["response"].startswith("Plain answer to ")
            assert roles == ["pre-check", "model", "post-check"]
    again = _run(tmp_path, "b", chunk_size=1)
    assert [r["response"] for r in again] == [r["response"] for r in rows]


def test_a_tiny_vlm_answers_under_the_prefix_in_its_assistant_turn(tmp_path):
    # a real chat template and processor: a conversation ending in an assistant turn, with an image, must render
    cfg = {"name": "eta-tiny", "seed": 0, "targets": [{"name": "tiny", "id": "llava", "args": {"family": "llava"}}],
           "datasets": [{"name": "shapeworld-vqa", "id": "sw", "args": {"n": 1, "size": 32}}],
           "defenses": [{"name": "eta", "args": {"pre_judge": {"name": SIGNAL, "args": {"word": "?"}},
                                                 "post_judge": TAGGED, "best_of": 2}}],
           "judges": [], "generation": {"max_new_tokens": 3}}
    run(cfg, out=tmp_path / "t", report=False, judge=False, progress=False)
    with Store(tmp_path / "t" / STORE_NAME) as s:
        (row,) = s.generations()
    prov = json.loads(row["provenance"])
    assert prov["extra"]["eta"]["aligned"] and row["response"].startswith(DEFAULT_PREFIX + " ")
    aligned = [t for t in prov["trace"] if t["role"] == "align"]
    assert len(aligned) == 2 and all(t["sent"][-1] == {"role": "assistant", "text": DEFAULT_PREFIX, "images": []}
                                     for t in aligned)
    assert all(t["sent"][0]["images"] for t in aligned)  # the image goes with the request
