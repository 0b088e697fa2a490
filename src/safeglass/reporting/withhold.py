"""What a shareable report leaves out: every reply to a harmful prompt, and every text that quotes one.

A defense may send a reply back to a model (a self-check asks "is this answer harmful?" with the answer in the
question), so hiding the reply fields is not enough: a sent turn, a judge's reason or any other text of the
sample that contains one of its withheld replies is replaced as a whole. The store and samples.jsonl keep
everything; only what goes into the report's file is redacted.
"""

from __future__ import annotations

from typing import Any

PLACEHOLDER = ("[withheld: this text contains a response to a harmful prompt; write the report with "
               "--show-harmful to include it]")


def _normal(text: str) -> str:
    # A defense may re-wrap or re-indent a reply before sending it on; whitespace must not let one through.
    return " ".join(text.split())


def withheld_replies(sample: dict[str, Any]) -> list[str]:
    """The sample's reply and every sub-call reply in its trace, whitespace-normalized, empty ones dropped."""
    texts = [sample.get("response")]
    texts += [t.get("reply") for t in sample.get("trace") or [] if isinstance(t, dict)]
    return list(dict.fromkeys(n for n in (_normal(str(t)) for t in texts if t) if n))


def quotes(text: str, replies: list[str]) -> bool:
    """Whether `text` contains any of `replies` (as :func:`withheld_replies` gives them), whitespace aside."""
    if not replies or not text:
        return False
    flat = _normal(text)
    return any(r in flat for r in replies)


def redact(text: str, replies: list[str]) -> str:
    """`text`, or the placeholder when it quotes a withheld reply."""
    return PLACEHOLDER if quotes(text, replies) else text
