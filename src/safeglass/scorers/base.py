"""The Scorer interface and the built-in answer scorers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from safeglass.judges.base import Judge, JudgeIdentity
from safeglass.scorers import answers
from safeglass.types import JudgeInput, Verdict

NO_REFERENCE = "no-reference"  # the label of a reply whose sample has nothing to score against


class Scorer(Judge):
    """A judge that compares a reply with the sample's reference (``JudgeInput.reference``: the sample's
    metadata). Override ``correct``; None means the sample has no reference (recorded, never counted)."""

    name = "scorer"
    version = "1"
    measure = "accuracy"  # type: ignore[assignment]

    def correct(self, response: str, reference: dict[str, Any]) -> bool | None:
        raise NotImplementedError

    def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]:
        out = []
        for it in items:
            ok = self.correct(it.response, dict(it.reference or {}))
            out.append(Verdict(False, math.nan, NO_REFERENCE) if ok is None
                       else Verdict(bool(ok), float(ok), "correct" if ok else "wrong"))
        return out


class _RuleScorer(Scorer):
    rule: Callable[[str, dict[str, Any]], bool | None]

    def __init__(self, field: str = "answer") -> None:
        self.field = str(field)

    def correct(self, response: str, reference: dict[str, Any]) -> bool | None:
        if self.field != "answer":  # the reference lives under another metadata field (a user's JSONL column)
            reference = {**reference, "answer": reference.get(self.field), "answers": None}
        return type(self).rule(response, reference)

    def identity(self) -> JudgeIdentity:
        return JudgeIdentity(self.name, self.version, self.measure, extra={"field": self.field})


class MCAccuracy(_RuleScorer):
    """Multiple choice (MMBench-style): right when the letter the reply chooses is the answer key's.

    Args:
        field: the sample metadata field holding the answer (default ``answer``; ``answers`` lists accepted ones).
    """

    name = "mc-accuracy"
    rule = staticmethod(answers.mc_correct)


class ExactMatch(_RuleScorer):
    """Right when the whole reply (lower-cased, punctuation dropped) is one of the sample's accepted answers.

    Args:
        field: the sample metadata field holding the answer (default ``answer``; ``answers`` lists accepted ones).
    """

    name = "exact-match"
    rule = staticmethod(answers.exact_correct)


class AnswerAccuracy(_RuleScorer):
    """The rule the sample asks for: multiple choice, ShapeWorld VQA, else an accepted answer as whole words.

    Args:
        field: the sample metadata field holding the answer (default ``answer``; ``answers`` lists accepted ones).
    """

    name = "answer-accuracy"
    rule = staticmethod(answers.answer_correct)
