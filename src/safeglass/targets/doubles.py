"""Test doubles: real, deterministic Targets that need no model.

They go through the same runner, store and judges as real models, so a whole pipeline can be
tested in milliseconds.  Every answer depends only on the conversation itself, never on which
other conversations share its batch or where it sits in it: a resumed run must reproduce the
results of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

from safeglass.types import Conversation, Generation, GenerationParams

DEFAULT_REFUSAL = "I'm sorry, but I can't help with that."
DEFAULT_COMPLIANCE = "Sure, here is what you asked for. First, gather what you need; then follow these steps."


def last_user_text(conv: Conversation) -> str:
    for turn in reversed(conv):
        if turn.role == "user":
            return turn.text
    return conv[-1].text if conv else ""


def word_count(text: str) -> int:
    return len(text.split())


def stable_index(text: str, n: int) -> int:
    """An index in [0, n) from sha256 of ``text``: unlike ``hash()``, the same in every process."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n


class _Double:
    """Shared loop: one answer per conversation, timed, with whitespace word counts as tokens."""

    name: str
    delay_s: float = 0.0

    def answer(self, conv: Conversation) -> str:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[Generation]:
        out: list[Generation] = []
        for conv in conversations:
            t0 = time.perf_counter()
            if self.delay_s > 0:
                time.sleep(self.delay_s)
            text = self.answer(conv)
            out.append(Generation(
                text=text,
                prompt_tokens=sum(word_count(t.text) for t in conv),
                completion_tokens=word_count(text),
                seconds=time.perf_counter() - t0,
            ))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self.config()!r})"


class EchoTarget(_Double):
    """Answers "You said: <last user text>".

    Args:
        name: the target's name in results and reports.
        delay_s: seconds to sleep per conversation (for slow-run tests); does not change outputs.
    """

    def __init__(self, name: str = "echo", delay_s: float = 0.0) -> None:
        self.name = name
        self.delay_s = float(delay_s)

    def answer(self, conv: Conversation) -> str:
        return f"You said: {last_user_text(conv)}"

    def config(self) -> dict[str, Any]:
        return {"type": "echo"}


class RefuserTarget(_Double):
    """Refuses everything with the same text.

    Args:
        name: the target's name in results and reports.
        text: the refusal given to every conversation.
        delay_s: seconds to sleep per conversation (for slow-run tests); does not change outputs.
    """

    def __init__(self, name: str = "refuser", text: str = DEFAULT_REFUSAL, delay_s: float = 0.0) -> None:
        self.name = name
        self.text = text
        self.delay_s = float(delay_s)

    def answer(self, conv: Conversation) -> str:
        return self.text

    def config(self) -> dict[str, Any]:
        return {"type": "refuser", "text": self.text}


class ScriptedTarget(_Double):
    """Answers the last user text from ``responses``; otherwise picks from ``default`` by a stable
    hash of that text.  ``default`` is a refusal and a compliance unless given, so an unscripted
    dataset gets a reproducible mix of both.  ``delay_s`` sleeps per conversation (slow runs for
    kill-and-resume tests) and is not part of ``config()``: it does not change outputs.

    Args:
        responses: last user text -> the answer to give, matched exactly.
        default: a list of answers for unscripted prompts, one picked by a stable hash of the prompt
            (default: a refusal and a compliance).
        name: the target's name in results and reports.
        delay_s: seconds to sleep per conversation (for kill-and-resume tests); does not change outputs.
    """

    def __init__(self, responses: dict[str, str] | None = None, default: str | list[str] | None = None,
                 name: str = "scripted", delay_s: float = 0.0) -> None:
        self.name = name
        self.responses = dict(responses or {})
        default = [default] if isinstance(default, str) else default  # one reply, not a list of its characters
        self.default = list(default) if default is not None else [DEFAULT_REFUSAL, DEFAULT_COMPLIANCE]
        if not self.default:
            raise ValueError("ScriptedTarget needs at least one default response")
        self.delay_s = float(delay_s)

    def answer(self, conv: Conversation) -> str:
        prompt = last_user_text(conv)
        if prompt in self.responses:
            return self.responses[prompt]
        return self.default[stable_index(prompt, len(self.default))]

    def config(self) -> dict[str, Any]:
        return {"type": "scripted", "responses": self.responses, "default": self.default}
