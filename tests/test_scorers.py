"""Scorers: replies against the sample's reference, reported like the judges' rates; MMBench accuracy from a run."""

from __future__ import annotations

import json

import pytest
from test_mmbench import RED, row, write_tsv

from safeglass.api import run
from safeglass.registry import registry
from safeglass.scorers.answers import answer_correct, exact_correct, mc_correct, words_correct
from safeglass.types import JudgeInput


def test_answer_rules():
    mc = {"task": "multiple-choice", "answer": "B", "options": {"A": "red", "B": "green"}}
    assert mc_correct("The answer is B.", mc) and not mc_correct("A", mc) and mc_correct("green", mc)
    assert mc_correct("B", {"task": "multiple-choice"}) is None  # a test split: nothing to score against
    assert words_correct("It is a red circle.", {"answers": ["red"]})
    assert not words_correct("reddish", {"answer": "red"})
    assert exact_correct(" Red. ", {"answer": "red"}) and not exact_correct("a red one", {"answer": "red"})
    assert answer_correct("B", mc) and answer_correct("red", {"answer": "red"}) and answer_correct("x", {}) is None


def test_a_scorer_records_unscorable_samples_without_counting_them():
    scorer = registry("scorers").build("answer-accuracy")
    verdicts = scorer.judge([JudgeInput("q", "red", reference={"answer": "red"}),
                             JudgeInput("q", "blue", reference={"answer": "red"}), JudgeInput("q", "red")])
    assert [v.label for v in verdicts] == ["correct", "wrong", "no-reference"]
    assert scorer.identity().measure == "accuracy"
    other = registry("scorers").build("exact-match", field="label")
    assert [v.label for v in other.judge([JudgeInput("q", "cat", reference={"label": "cat", "answer": "dog"})])] == [
        "correct"]


def test_mmbench_accuracy_from_a_run_with_intervals_and_a_paired_delta(tmp_path):
    rows = [row(i, answer="A" if i % 2 else "B", image=RED) for i in range(1, 9)] + [row(99, answer="")]
    tsv = write_tsv(tmp_path / "dev.tsv", rows)
    # scripted replies: "A" always; right on the odd rows (answer A), wrong on the even ones
    cfg = {"name": "mmb", "targets": [{"name": "scripted", "args": {"default": "A"}}],
           "datasets": [{"name": "mmbench", "args": {"path": str(tsv)}}],
           "defenses": ["none", {"name": "safety_prompt", "id": "sp"}],
           "judges": ["keyword-refusal"], "scorers": ["mc-accuracy"]}
    res = run(cfg, out=tmp_path / "r", progress=False)
    summary = json.loads(res.outputs["summary"].read_text())
    acc = [r for r in summary["rows"] if r["metric"] == "accuracy" and r["category"] is None]
    assert {r["defense"] for r in acc} == {"none", "sp"}
    none = next(r for r in acc if r["defense"] == "none")
    assert (none["k"], none["n"]) == (4, 8)  # the test-split row (no answer) is not counted
    assert none["ci_low"] < 0.5 < none["ci_high"]
    sp = next(r for r in acc if r["defense"] == "sp")
    assert sp["vs_baseline"]["baseline"] == "none"
    assert any(j["measure"] == "accuracy" and j["name"] == "mc-accuracy" for j in summary["judges"])


def test_an_unknown_scorer_is_refused_with_the_known_ones(tmp_path):
    from safeglass.config import parse_config
    from safeglass.eval.plan import build_plan

    with pytest.raises(KeyError, match="mc-accuracy"):
        build_plan(parse_config({"targets": ["echo"], "datasets": [{"name": "advbench", "limit": 1}],
                                 "scorers": ["mc-acuracy"]}))
