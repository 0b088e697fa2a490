"""Data v4 of the sentence judges (no weights needed): the long non-deliveries written in the long answers' style, how
each becomes a labelled example, that data v3's examples are unchanged inside data v4, and that length no longer
tells a long answer from a long non-delivery."""

from __future__ import annotations

import json
import random
import re
import statistics

import pytest

from safeglass.judges.fulfilment import split_sentences
from safeglass.judges.keyword import KeywordRefusalJudge
from safeglass.organisms import fulfilment_train as ft


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return ft.load_long_nondeliveries()


def _chars(row: dict[str, str]) -> int:
    return len(row["text"]) if "text" in row else len(row["preamble"]) + 2 + len(row["refusal"])


def test_every_long_answer_has_its_three_long_nondeliveries(rows) -> None:
    answered = [p for p, _ in ft.load_model_answers(ft.RESOURCES / ft.LONG_ANSWERS_FILE)]
    answered += [p for p, _ in ft.load_model_answers(ft.RESOURCES / ft.LONG_ANSWERS_V4_FILE)]
    assert len(answered) == len(set(answered)) >= 45  # the 29 of data v3 and ~20 new requests, all usable answers
    kinds: dict[str, list[str]] = {}
    for row in rows:
        kinds.setdefault(row["prompt"], []).append(row["kind"])
    assert set(kinds) == set(answered)
    assert all(sorted(k) == sorted(ft.NONDELIVERY_KINDS) for k in kinds.values())


def test_nondeliveries_are_long_formatted_and_carry_no_refusal_phrase_unless_late(rows) -> None:
    kw = KeywordRefusalJudge()
    for row in rows:
        assert 300 <= _chars(row) <= 1400, (row["prompt"], row["kind"])
        text = row.get("text") or row["preamble"]
        # the assistant style: bold, headings, lists or code, not one paragraph (a short poem may be plain verse)
        assert any(m in text for m in ("**", "#", "\n- ", "\n1. ", "```")) or "poem" in row["prompt"]
        # deflections, related answers and late refusals' preambles decline nothing (the keyword judge agrees)
        assert not kw.judge_text(text).flag, (row["prompt"], row["kind"])
        if row["kind"] == "late_refusal":  # the last part declines (in varied words, not only the keyword list's)
            assert re.search(r"\b(?:can't|won't|not|decline|leave)\b", row["refusal"]), row["refusal"]
            assert len(split_sentences(row["refusal"])) <= 2 < len(split_sentences(row["preamble"]))


def test_length_does_not_tell_long_answers_from_long_nondeliveries() -> None:
    extra = ft.build_examples(seed=0, data="v4")[len(ft.build_examples(seed=0, data="v3")):]
    old = [e for e in ft.build_examples(seed=0, data="v3") if e.origin == "long:answer"]
    delivered = [len(e.response) for e in old + extra if e.origin in ("long:answer", "long4:answer", "long4:truncated")]
    not_delivered = [len(e.response) for e in extra if e.origin.startswith("longnd:")]
    assert len(not_delivered) == 3 * len(old + [e for e in extra if e.origin == "long4:answer"])
    # probability that a random delivering long reply is longer than a random long non-delivery (AUC of length)
    auc = sum((a > b) + 0.5 * (a == b) for a in delivered for b in not_delivered) / len(delivered) / len(not_delivered)
    assert 0.35 <= auc <= 0.65, auc
    assert abs(statistics.median(delivered) - statistics.median(not_delivered)) < 150


def test_nondelivery_examples_labels(rows) -> None:
    by_kind = {r["kind"]: r for r in rows if r["prompt"] == rows[0]["prompt"]}
    for kind, row in by_kind.items():
        e = ft._nondelivery_example(row, "train")
        assert (e.fulfilment, e.refusal) == (0, 1) and e.origin == f"longnd:{kind}"
        sent = e.sentence_kinds()
        if kind == "late_refusal":
            assert sent[-1][1] == "refusal" and {k for _, k in sent[:-1]} == {"filler"}
            assert e.response.endswith(row["refusal"])
        else:
            assert {k for _, k in sent} == {"answer" if kind == "related_answer" else "filler"}


def test_truncated_long_answers_still_deliver() -> None:
    extra = ft.build_examples(seed=0, data="v4")[len(ft.build_examples(seed=0, data="v3")):]
    cut = [e for e in extra if e.origin == "long4:truncated"]
    assert len(cut) >= 45 and all((e.fulfilment, e.refusal) == (1, 0) for e in cut)
    answers = dict(ft.load_model_answers(ft.RESOURCES / ft.LONG_ANSWERS_FILE)
                   + ft.load_model_answers(ft.RESOURCES / ft.LONG_ANSWERS_V4_FILE))
    for e in cut:
        full = answers[e.prompt]
        assert full.startswith(e.response.split("\n", 1)[0]) and 0.45 * len(full) <= len(e.response) < 0.86 * len(full)
    text = "First line of the answer.\n1. Step one, in some detail here.\n2. Step two, in detail.\n3. The end."
    for seed in range(20):
        cut = ft._cut_at_line(text, random.Random(seed))
        assert text.startswith(cut) and text[len(cut)] in "\n " and len(cut) < 0.86 * len(text)


def test_data_v4_keeps_data_v3_as_it_was_and_splits_by_request() -> None:
    v3 = ft.build_examples(seed=0, data="v3")
    v4 = ft.build_examples(seed=0, data="v4")
    assert [(e.prompt, e.response, e.origin) for e in v4[:len(v3)]] == [(e.prompt, e.response, e.origin) for e in v3]
    extra = v4[len(v3):]
    assert {e.origin.split(":")[0] for e in extra} == {"long4", "longnd"}
    split_of: dict[str, set[str]] = {}
    for e in v4:
        split_of.setdefault(e.prompt, set()).add(e.split)
    assert all(len(s) == 1 for s in split_of.values())  # no request on both sides
    assert {e.split for e in extra if e.origin.startswith("longnd:")} == {"train", "val"}


def test_malformed_or_missing_nondeliveries_fail(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        ft.load_long_nondeliveries(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "kind": "late_refusal", "preamble": "Some context."}) + "\n",
                   encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: late_refusal row without field 'refusal'"):
        ft.load_long_nondeliveries(bad)
    bad.write_text(json.dumps({"prompt": "p", "kind": "lecture", "text": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: field 'kind' is 'lecture'"):
        ft.load_long_nondeliveries(bad)
