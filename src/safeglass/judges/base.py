"""The Judge interface and the identity recorded with every score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from safeglass.types import JudgeInput, Verdict

__all__ = ["THREE_WAY", "Judge", "JudgeIdentity", "JudgeInput", "Measure", "Verdict", "threshold_verdicts"]

# XSTest's and OR-Bench's three classes of a reply (the three-way judges' labels; the report counts them per row)
THREE_WAY = ("full_compliance", "partial_refusal", "full_refusal")

# "signal": an input-side signal (injection, image NSFW, text in an image) shown per sample, not a metric.
# "accuracy": a scorer's, right or wrong against the sample's reference.
Measure = Literal["refusal", "toxicity", "harm", "signal", "accuracy"]


@dataclass(frozen=True)
class JudgeIdentity:
    name: str
    version: str
    measure: str
    weights_hash: str = ""
    prompt_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Short identity used in store keys: a re-versioned judge gets fresh scores."""
        from safeglass.hashing import content_hash

        return f"{self.name}@{content_hash(asdict(self), 10)}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Judge:
    """Base class. Subclasses set ``name``, ``version``, ``measure`` and implement ``judge``."""

    name: str = "judge"
    version: str = "0"
    measure: Measure = "refusal"
    batch_size: int = 64

    def identity(self) -> JudgeIdentity:
        return JudgeIdentity(self.name, self.version, self.measure)

    def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]:
        raise NotImplementedError

    def __call__(self, prompt: str, response: str, **kw: Any) -> Verdict:
        return self.judge([JudgeInput(prompt, response, **kw)])[0]


def threshold_verdicts(name: str, scores: Sequence[float], threshold: float, yes: str, no: str) -> list[Verdict]:
    """One verdict per probability: flagged at or above `threshold`, with the reason every thresholded head writes."""
    out = []
    for s in scores:
        flag = bool(s >= threshold)
        out.append(Verdict(flag, float(s), yes if flag else no,
                           f"{name} p={s:.3f} {'>=' if flag else '<'} threshold {threshold:.3f}"))
    return out
