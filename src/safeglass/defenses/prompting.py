"""Conversation edits that prompt defenses share: read the request, rewrite the user or system turn, drop the
images, and reach the model itself for an auxiliary sub-call.

An auxiliary sub-call (a rationale, a harm check, a caption) goes to the defended model itself
(:func:`model_itself`), not through the defenses that follow in a chain: a later AdaShield would append its
prompt to a captioning request and a later SmoothVLM would vote over perturbed copies of a yes/no check, which is
no part of either method. The answer itself goes through the rest of the chain as any defense's answer does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from safeglass.types import Conversation, ImageRef, Target, Turn


def read_text_file(path: str) -> str:
    """A UTF-8 text file's stripped content (a prompt or template a user keeps in a file)."""
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def last_user_index(conv: Conversation) -> int:
    """The position of the last user turn (the request); -1 when the conversation has none."""
    for i in range(len(conv) - 1, -1, -1):
        if conv[i].role == "user":
            return i
    return -1


def request_text(conv: Conversation) -> str:
    """The request: the last user turn's text."""
    i = last_user_index(conv)
    return conv[i].text if i >= 0 else (conv[-1].text if conv else "")


def with_request_text(conv: Conversation, text: str) -> Conversation:
    """The conversation with the last user turn's text replaced (its images kept); a user turn is added when
    there is none."""
    i = last_user_index(conv)
    if i < 0:
        return (*conv, Turn("user", text))
    return (*conv[:i], replace(conv[i], text=text), *conv[i + 1:])


def with_system_prompt(conv: Conversation, prompt: str) -> Conversation:
    """The conversation with ``prompt`` as its system prompt, placed before any system text it already has (as
    ``safety_prompt`` merges)."""
    if conv and conv[0].role == "system":
        return (Turn("system", f"{prompt}\n\n{conv[0].text}", conv[0].images), *conv[1:])
    return (Turn("system", prompt), *conv)


def conversation_images(conv: Conversation) -> tuple[ImageRef, ...]:
    return tuple(img for t in conv for img in t.images)


def without_images(conv: Conversation) -> Conversation:
    return tuple(replace(t, images=()) for t in conv)


def fill(template: str, **values: str) -> str:
    """``template`` with each ``{name}`` replaced; other braces are left alone (a user's template may hold JSON or
    code, which ``str.format`` would refuse)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def require_placeholders(template: str, names: tuple[str, ...], where: str) -> str:
    missing = [n for n in names if "{" + n + "}" not in template]
    if missing:
        raise ValueError(f"{where}: the template must contain {', '.join('{' + n + '}' for n in missing)}")
    return template


def model_itself(ctx: Any, target: Target) -> Target:
    """The defended model, for an auxiliary sub-call: the context's target in a run, ``target`` outside one."""
    return ctx.target if ctx is not None else target
