"""The answer rules: multiple choice (the letter a free-text reply chooses), ShapeWorld VQA (its own rules for
regions and yes/no) and whole-word matching of accepted answers. One place, used by the scorers and by SGM's
utility block."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any


def mc_correct(response: str, metadata: dict[str, Any]) -> bool | None:
    """Whether the reply chooses the right option (None: no answer key, e.g. a test split)."""
    from safeglass.data.mmbench import parse_choice

    ans = metadata.get("answer")
    if ans is None:
        return None
    options = metadata.get("options") or ("A", "B", "C", "D")
    return parse_choice(response, options) == str(ans).strip().upper()


def words_correct(response: str, metadata: dict[str, Any]) -> bool | None:
    """Whether an accepted answer (``answers``, else ``answer``) appears in the reply as whole words."""
    accepted = metadata.get("answers") or ([metadata["answer"]] if metadata.get("answer") is not None else [])
    if not accepted:
        return None
    text = " " + " ".join(re.findall(r"[a-z0-9]+", (response or "").lower())) + " "
    return any(" " + " ".join(re.findall(r"[a-z0-9]+", str(a).lower())) + " " in text for a in accepted)


def exact_correct(response: str, metadata: dict[str, Any]) -> bool | None:
    """Whether the whole reply, lower-cased and stripped of punctuation, is an accepted answer."""
    accepted = metadata.get("answers") or ([metadata["answer"]] if metadata.get("answer") is not None else [])
    if not accepted:
        return None
    norm = " ".join(re.findall(r"[a-z0-9]+", (response or "").lower()))
    return any(norm == " ".join(re.findall(r"[a-z0-9]+", str(a).lower())) for a in accepted)


def answer_correct(response: str, metadata: dict[str, Any]) -> bool | None:
    """Whether a reply is right by the rule its sample asks for: multiple choice (``task: multiple-choice``),
    ShapeWorld VQA (``question_kind``), else whole words. None: nothing to score against."""
    if metadata.get("task") == "multiple-choice":
        return mc_correct(response, metadata)
    if "question_kind" in metadata and "answers" in metadata:
        from safeglass.data.shapeworld.tasks import answer_correct as shapeworld_correct

        return shapeworld_correct(response, SimpleNamespace(metadata=metadata))
    return words_correct(response, metadata)
