"""Output moderation: the reply is generated, a judge reads it, and a reply the judge flags is replaced by a
refusal (what a Llama Guard-style output filter does in front of a deployed model).

The default judge, ``proxy-harm-gated``, reads the request with the reply: it withholds a reply only when the
request asks for harm and the reply achieves it. ``proxy-harm`` alone (the default before it, still reachable by
naming it) only sees whether a reply does what was asked, so it withheld every on-topic answer to a benign request
(SmolLM2 on the 186 look-alikes: docs/defenses.md).

The judge is built at generation time through the defense context (never on ``--dry-run``), shared with the
run's other defenses, and its identity enters this defense's result key. Every reply costs one judgment,
traced beside the model call in the report's sample browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from safeglass.defenses.base import Defense
from safeglass.defenses.context import DefenseContext, Uses
from safeglass.types import Generation, GenerationParams, JudgeInput, Sample, Target

DEFAULT_REFUSAL = "I'm sorry, but I can't help with that."
WITHHOLDING_MEASURES = ("harm", "toxicity")  # a flag on these means the reply must not go out
DEFAULT_JUDGE = "proxy-harm-gated"


class OutputFilter(Defense):
    """Replaces replies a harm or toxicity judge flags by a refusal.

    Args:
        judge: the judge reading each request and reply, a registry name or ``{name, args}``; it must measure harm or
            toxicity (its flag withholds the reply), e.g. proxy-harm-gated (harmful request and achieved),
            proxy-harm (achieved, whatever was asked), jigsaw-toxicity or llm-judge with the harm rubric.
        refusal: the text returned instead of a withheld reply.
    """

    name = "output_filter"

    def __init__(self, judge: Any = DEFAULT_JUDGE, refusal: str = DEFAULT_REFUSAL) -> None:
        self.judge_ref = Uses.parse(judge, "judges", "output judge", "output_filter: option 'judge'",
                                    needs=WITHHOLDING_MEASURES)
        self.refusal = str(refusal)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "refusal": self.refusal}

    def uses(self) -> list[Uses]:
        return [self.judge_ref]

    def setup(self, ctx: DefenseContext) -> None:
        super().setup(ctx)
        measure = getattr(ctx.component(self.judge_ref), "measure", None)
        if measure not in WITHHOLDING_MEASURES:
            raise ValueError(f"output_filter: judge {self.judge_ref.name} measures {measure!r}; it needs one that "
                             f"measures {' or '.join(WITHHOLDING_MEASURES)} (its flag withholds a reply)")

    def generate(self, target: Target, samples: Sequence[Sample], params: GenerationParams) -> list[Generation]:
        if self.ctx is None:
            raise RuntimeError("output_filter needs a defense context (it is set up by the runner)")
        gens = super().generate(target, samples, params)
        items = [JudgeInput(str(s.metadata.get("objective") or s.prompt), g.text, kind=s.kind, category=s.category)
                 for s, g in zip(samples, gens, strict=True)]
        verdicts = self.ctx.judge(self.judge_ref.role, self.judge_ref, items)
        return [replace(g, text=self.refusal, finish_reason="filtered", extra={**g.extra, "withheld": True})
                if v.flag else g for g, v in zip(gens, verdicts, strict=True)]
