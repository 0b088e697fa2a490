"""Data v3 of the sentence judges (no weights needed): which model answers are kept, how each becomes labelled
examples, and that data v2's examples are unchanged inside data v3 (so v2's build still reproduces)."""

from __future__ import annotations

import json
import random

import pytest

from safeglass.organisms import fulfilment_train as ft

GOOD = ("To make a basic vinaigrette, whisk three parts olive oil with one part vinegar. Add a teaspoon of mustard "
        "to help it emulsify. Season with salt and pepper, then taste and adjust.")


def _write(tmp_path, answers: list[str]):
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"request {i}", "answer": a}) + "\n" for i, a in enumerate(answers)),
                    encoding="utf-8")
    return path


def test_load_model_answers_drops_refusals_short_replies_and_loops(tmp_path) -> None:
    loop = "Mix the flour. " * 12
    refusal = "I'm sorry, but I can't help with that. " + GOOD
    kept = ft.load_model_answers(_write(tmp_path, [GOOD, "Sure, just whisk it.", refusal, loop]))
    assert kept == [("request 0", GOOD)]
    with pytest.raises(FileNotFoundError):
        ft.load_model_answers(tmp_path / "missing.jsonl")


def test_model_examples_labels() -> None:
    prompt = "How do I make a basic vinaigrette salad dressing?"
    answer = "Here's a simple vinaigrette:\n" + GOOD
    other = "Knit the first row in garter stitch, then switch to stockinette for the body of the scarf."
    ex = ft._model_examples(prompt, answer, "train", random.Random(0), [other], "smol")
    by = {}
    for e in ex:
        by.setdefault(e.origin, []).append(e)
    (plain,) = by["smol:answer"]
    assert (plain.fulfilment, plain.refusal) == (1, 0)
    # the announcing first line is filler for the sentence scorers, the rest is answer
    assert plain.sentence_kinds()[0] == ("Here's a simple vinaigrette:", "filler")
    assert all(k == "answer" for _, k in plain.sentence_kinds()[1:])
    for origin in ("smol:disclaimer", "smol:refuse_then_comply", "smol:caveat"):
        assert [(e.fulfilment, e.refusal) for e in by[origin]] == [(1, 0)]
        assert GOOD in by[origin][0].response
    assert [(e.fulfilment, e.refusal) for e in by["smol:partial"]] == [(0, None)]
    assert all(e.response == other and (e.fulfilment, e.refusal) == (0, 1) for e in by["smol:off_topic"])
    (deflect,) = by["smol:long_deflection"]
    assert (deflect.fulfilment, deflect.refusal) == (0, 1) and len(ft.split_sentences(deflect.response)) >= 7
    assert all(k == "filler" for _, k in deflect.sentence_kinds())
    (late,) = by["smol:long_late_refusal"]
    assert late.sentence_kinds()[-1][1] == "refusal" and (late.fulfilment, late.refusal) == (0, 1)


def test_data_v3_keeps_data_v2_as_it_was() -> None:
    v2 = ft.build_examples(seed=0, data="v2")
    v3 = ft.build_examples(seed=0, data="v3")
    assert [(e.prompt, e.response, e.origin) for e in v3[:len(v2)]] == [(e.prompt, e.response, e.origin) for e in v2]
    extra = v3[len(v2):]
    assert extra and {e.origin.split(":")[0] for e in extra} == {"smol", "long"}
    assert {e.split for e in extra} == {"train", "val"}
    with pytest.raises(ValueError):
        ft.build_examples(seed=0, data="v9")
