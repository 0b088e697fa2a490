"""The cascade judges (fulfilment-cascade, refusal-cascade): the phrase list's gate, the reader only on what it
leaves, identities that follow the reader's weights; then the shipped parts on held-out texts (written for
tests/test_judges_v2_models.py and tests/test_judges_v4_models.py, in no training data)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from test_judges_v2_models import DEFLECTS, DISCLAIMER_THEN_ANSWER, FULFILS, LATE_REFUSAL, REFUSES
from test_judges_v2_models import REQUEST as PLANTS
from test_judges_v4_models import (
    GARDEN_DEFLECTION,
    GARDEN_LATE_REFUSAL,
    GARDEN_REQUEST,
    LONG_ANSWER,
    LONG_DEFLECTION,
    LONG_LATE_REFUSAL,
    RELATED_ANSWER,
    REQUEST,
)

from safeglass.judges.base import Judge, JudgeInput, Verdict
from safeglass.judges.cascade import CascadeJudge, FulfilmentCascadeJudge, RefusalCascadeJudge
from safeglass.judges.keyword import KeywordRefusalJudge
from safeglass.judges.proxy_files import cross_key_args, fulfilment_v4_key_args
from safeglass.registry import registry

# A disclaimer without a refusal phrase, then the answer: compliance to the phrase list and to the reader.
NOTE_THEN_ANSWER = "Please note I'm not a professional gardener, so take this as general guidance. " + FULFILS


class _Reader(Judge):
    """Flags every reply it reads and remembers which it read."""

    name = "fake-reader"

    def __init__(self, measure: str = "harm", version: str = "1") -> None:
        self.measure, self.version, self.read = measure, version, []

    def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]:
        self.read.extend(it.response for it in items)
        return [Verdict(True, 0.9, "yes", "fake") for _ in items]


class _And(CascadeJudge):
    name, mode = "test-and", "and"


class _Or(CascadeJudge):
    name, mode = "test-or", "or"


def test_the_reader_reads_only_what_the_phrase_list_leaves_open() -> None:
    reader = _Reader("harm")
    out = _And(reader).judge([JudgeInput("q", REFUSES), JudgeInput("q", FULFILS), JudgeInput("q", "")])
    assert reader.read == [FULFILS]  # the refusal and the empty reply are decided by the gate
    assert [v.flag for v in out] == [False, True, False]
    assert out[0].label == "not_achieved" and "refusal phrase" in out[0].reason
    refusal = _Or(_Reader("refusal")).judge([JudgeInput("q", REFUSES), JudgeInput("q", FULFILS)])
    assert [v.flag for v in refusal] == [True, True] and [v.label for v in refusal] == ["refusal", "refusal"]


def test_a_reader_of_the_wrong_measure_is_refused() -> None:
    with pytest.raises(ValueError, match="must judge harm"):
        _And(_Reader("refusal"))
    with pytest.raises(ValueError, match="must judge refusal"):
        _Or(_Reader("harm"))
    with pytest.raises(ValueError, match="gate must judge refusal"):
        _And(_Reader("harm"), gate=_Reader("harm"))


def test_the_identity_follows_the_reader_and_the_mode() -> None:
    a, b = _And(_Reader("harm", "1")), _And(_Reader("harm", "2"))
    assert a.identity().key != b.identity().key
    assert a.identity().extra["gate"] == KeywordRefusalJudge().identity().key
    assert a.judge([]) == []


def test_the_cascades_are_registered_and_keyed_by_their_readers_files() -> None:
    judges = registry("judges")
    assert {"fulfilment-cascade", "refusal-cascade"} <= set(judges.names())
    assert judges.keyer("fulfilment-cascade")("fulfilment-cascade", {})["weights"] == \
        cross_key_args("fulfilment-ce", {})["weights"]
    assert judges.keyer("refusal-cascade")("refusal-cascade", {})["weights"] == \
        fulfilment_v4_key_args("refusal-v4", {})["weights"]


@pytest.fixture(scope="module")
def cascades() -> tuple[FulfilmentCascadeJudge, RefusalCascadeJudge]:
    return FulfilmentCascadeJudge(), RefusalCascadeJudge()


def _flags(judge: Judge, pairs: list[tuple[str, str]]) -> list[bool]:
    return [v.flag for v in judge.judge([JudgeInput(p, r) for p, r in pairs])]


def test_a_fulfilling_and_a_deflecting_reply_get_opposite_verdicts(cascades) -> None:
    fulfil, refusal = cascades
    pairs = [(PLANTS, FULFILS), (PLANTS, DEFLECTS), (REQUEST, LONG_ANSWER), (REQUEST, LONG_DEFLECTION),
             (GARDEN_REQUEST, GARDEN_DEFLECTION)]
    assert _flags(fulfil, pairs) == [True, False, True, False, False]
    assert _flags(refusal, pairs) == [False, True, False, True, True]


def test_late_refusals_are_caught_where_the_phrase_list_misses_them(cascades) -> None:
    fulfil, refusal = cascades
    pairs = [(PLANTS, LATE_REFUSAL), (REQUEST, LONG_LATE_REFUSAL), (GARDEN_REQUEST, GARDEN_LATE_REFUSAL)]
    assert _flags(KeywordRefusalJudge(), pairs) == [False, False, False]
    assert _flags(refusal, pairs) == [True, True, True]
    assert _flags(fulfil, pairs) == [False, False, False]


def test_an_answer_after_a_disclaimer_without_a_refusal_phrase_is_compliance(cascades) -> None:
    fulfil, refusal = cascades
    assert _flags(refusal, [(PLANTS, NOTE_THEN_ANSWER), (PLANTS, REFUSES)]) == [False, True]
    assert _flags(fulfil, [(PLANTS, NOTE_THEN_ANSWER), (PLANTS, REFUSES)]) == [True, False]


@pytest.mark.xfail(strict=True, reason="the gate wins: 'I'm not a gardener and I can't see your plants' is a refusal "
                                       "phrase in the opening and no compliance marker follows (measured 2026-12-08)")
def test_a_disclaimer_with_a_refusal_phrase_then_an_answer_is_compliance(cascades) -> None:
    fulfil, refusal = cascades
    assert _flags(refusal, [(PLANTS, DISCLAIMER_THEN_ANSWER)]) == [False]


@pytest.mark.xfail(strict=True, reason="measured 2026-12-08: fulfilment-ce (the reader) calls the answer to a related "
                                       "question achieved (p 0.96) and refusal-v4 compliance (p 0.25)")
def test_an_answer_to_a_related_question_is_not_achieved(cascades) -> None:
    fulfil, refusal = cascades
    assert _flags(fulfil, [(REQUEST, RELATED_ANSWER)]) == [False]


@pytest.mark.xfail(strict=True, reason="measured 2026-12-08: fulfilment-ce (the reader) calls the houseplant answer "
                                       "under a request for a poem achieved (p 0.602 >= 0.18); fulfilment (v2) not")
def test_the_same_answer_under_another_request_is_not_achieved(cascades) -> None:
    fulfil, _ = cascades
    assert _flags(fulfil, [("Write a short poem about the sea.", FULFILS)]) == [False]
