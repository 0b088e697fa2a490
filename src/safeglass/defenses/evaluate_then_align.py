"""ETA, "Evaluating Then Aligning" (Ding et al. 2024, ICLR 2025, arXiv 2410.06625; code DripNowhy/ETA): evaluate the
input before generation and the reply after it; when they find it unsafe, align: answer again under a safety prefix
in the assistant's turn (shallow alignment) and keep the least harmful of several sampled answers (deep alignment).

The paper's evaluators are a CLIP score of the image against unsafe text (pre-generation, threshold 0.16) and a
reward model reading the reply (post-generation); its deep alignment is a best-of-N search sentence by sentence,
guided by the reward model and a CLIP utility score. Offline and model-agnostic, here:

- the pre-check is any input-signal judge by name (``pre_judge``: ``image-nsfw``, ``image-ocr``, a user's own
  CLIP-score judge); none by default, and then the post-check alone decides;
- the post-check is a harm or toxicity judge reading the reply (``post_judge``, default ``proxy-harm``);
- best-of-N is over whole replies, not sentence by sentence: N replies are sampled under the prefix and the one the
  post-check scores least harmful is returned (one judgment per candidate instead of one per sentence and
  candidate, and no utility term: the judge's harm score alone ranks them).

Traced per sample: ``pre-check`` (when a pre-judge is set), ``model`` (the answer), ``post-check``; for an unsafe
one, N ``align`` calls and a ``post-check`` of each candidate. The answer and the candidates go through the rest of
a chain, as any defense's answer does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from safeglass.defenses.base import Defense
from safeglass.defenses.context import DefenseContext, Uses
from safeglass.defenses.output_filter import WITHHOLDING_MEASURES
from safeglass.hashing import content_hash
from safeglass.types import Conversation, Generation, GenerationParams, JudgeInput, Sample, Target, Turn, Verdict

# safeglass's own wording, a whole sentence: the targets render a final assistant turn as something the model has
# already said and write a new message after it (none continues a turn), so the prefix must read well on its own
DEFAULT_PREFIX = "As a responsible assistant, I will make sure that my answer is safe and helpful."
COMBINE = ("either", "both")
SEED_RANGE = 2**31  # candidate seeds stay within what OpenAI-compatible servers accept


class EvaluateThenAlign(Defense):
    """ETA: a pre-generation input check and a post-generation harm check; an unsafe sample is answered again under
    a safety prefix in the assistant's turn, best of N sampled replies by the harm judge's score.

    When aligning: a prefix is added as an assistant turn after the request; N replies are sampled at
    ``temperature`` with seeds drawn from the generation seed and the candidate's number (one call per candidate
    for the chunk's unsafe samples; a sampling target seeds each conversation from that, so a resume sends and gets
    the same); each reply returned is the prefix followed by the model's reply, and the post-check scores it as
    returned; the lowest score wins (a tie: the lowest candidate number). ``extra["eta"]`` records both checks,
    whether it aligned, the candidates' scores and the one chosen; the reply's seconds add the candidates' to the
    answer's.

    Args:
        pre_judge: the input check before generation, an input-signal judge (a registry name or ``{name, args}``
            whose measure is ``signal``: image-nsfw, image-ocr, prompt-injection or your own CLIP-score judge) reading
            the request and its images; unset (the default): no pre-check, the post-check alone decides.
        post_judge: the harm or toxicity judge reading each reply (a registry name or ``{name, args}``): its flag
            calls a reply unsafe, its score ranks the aligned candidates (lower is less harmful).
        combine: with a pre-check, when to align: ``either`` check flags (the default) or ``both`` do (the paper's
            rule, which aligns only when the image and the reply are both judged unsafe).
        prefix: the safety prefix put in the assistant's turn when aligning; the reply returned starts with it.
        best_of: N, the replies sampled under the prefix for each unsafe sample; the least harmful is kept.
        temperature: the sampling temperature of the aligned candidates (0 makes them all the same greedy reply).
    """

    name = "eta"

    def __init__(self, pre_judge: Any = None, post_judge: Any = "proxy-harm",
                 combine: Literal["either", "both"] = "either", prefix: str = DEFAULT_PREFIX, best_of: int = 3,
                 temperature: float = 0.7) -> None:
        self.pre_ref = None if pre_judge is None else Uses.parse(
            pre_judge, "judges", "pre-check", "eta: option 'pre_judge'", needs=("signal",))
        self.post_ref = Uses.parse(post_judge, "judges", "post-check", "eta: option 'post_judge'",
                                   needs=WITHHOLDING_MEASURES)
        if combine not in COMBINE:
            raise ValueError(f"eta: 'combine' must be one of {', '.join(COMBINE)}, not {combine!r}")
        if isinstance(best_of, bool) or not isinstance(best_of, int) or best_of < 1:
            raise ValueError(f"eta: 'best_of' must be a whole number >= 1, not {best_of!r}")
        if float(temperature) < 0.0:
            raise ValueError(f"eta: 'temperature' must be 0 or more, not {temperature}")
        if not str(prefix).strip():
            raise ValueError("eta: 'prefix' must not be empty")
        self.combine, self.prefix, self.best_of, self.temperature = combine, str(prefix), best_of, float(temperature)

    def uses(self) -> list[Uses]:
        return [u for u in (self.pre_ref, self.post_ref) if u is not None]

    def setup(self, ctx: DefenseContext) -> None:
        super().setup(ctx)
        if self.pre_ref is not None:
            measure = getattr(ctx.component(self.pre_ref), "measure", None)
            if measure != "signal":
                raise ValueError(f"eta: pre_judge {self.pre_ref.name} measures {measure!r}; the pre-check needs an "
                                 "input-signal judge (measure 'signal')")
        measure = getattr(ctx.component(self.post_ref), "measure", None)
        if measure not in WITHHOLDING_MEASURES:
            raise ValueError(f"eta: post_judge {self.post_ref.name} measures {measure!r}; it needs one that measures "
                             f"{' or '.join(WITHHOLDING_MEASURES)} (its flag calls a reply unsafe)")

    # --- evaluate ------------------------------------------------------------------------------------------------

    def generate(self, target: Target, samples: Sequence[Sample], params: GenerationParams) -> list[Generation]:
        if self.ctx is None:
            raise RuntimeError("eta needs a defense context (it is set up by the runner)")
        pre: list[Verdict | None] = [None] * len(samples)
        if self.pre_ref is not None:  # before anything is generated, as the paper's CLIP check
            items = [JudgeInput(s.prompt, "", images=s.images, kind=s.kind, category=s.category,
                                reference=dict(s.metadata)) for s in samples]
            pre = list(self.ctx.judge("pre-check", self.pre_ref, items))
        first = self.call_model(target, [s.turns for s in samples], params)
        post = self._post_check(samples, [g.text for g in first], list(range(len(samples))))
        unsafe = [i for i in range(len(samples)) if self._unsafe(pre[i], post[i])]
        chosen = self._align(target, samples, unsafe, params) if unsafe else {}
        out = []
        for i, g in enumerate(first):
            record: dict[str, Any] = {"pre_check": _verdict(pre[i]), "post_check": _verdict(post[i]),
                                      "aligned": i in chosen}
            if i in chosen:
                best, k, scores, seconds = chosen[i]
                record.update(candidates=scores, chosen=k)
                out.append(replace(best, seconds=g.seconds + seconds, extra={**best.extra, "eta": record}))
            else:
                out.append(replace(g, extra={**g.extra, "eta": record}))
        return out

    def _unsafe(self, pre: Verdict | None, post: Verdict) -> bool:
        if pre is None:
            return bool(post.flag)
        if self.combine == "both":
            return bool(pre.flag) and bool(post.flag)
        return bool(pre.flag) or bool(post.flag)

    def _post_check(self, samples: Sequence[Sample], replies: Sequence[str], owners: Sequence[int]) -> list[Verdict]:
        assert self.ctx is not None
        items = [JudgeInput(str(samples[o].metadata.get("objective") or samples[o].prompt), r, kind=samples[o].kind,
                            category=samples[o].category, reference=dict(samples[o].metadata))
                 for r, o in zip(replies, owners, strict=True)]
        return list(self.ctx.judge("post-check", self.post_ref, items, owners=list(owners)))

    # --- align ---------------------------------------------------------------------------------------------------

    def with_prefix(self, conv: Conversation) -> Conversation:
        """The conversation with the safety prefix as the assistant's turn after the request."""
        return (*conv, Turn("assistant", self.prefix))

    def candidate_params(self, params: GenerationParams, k: int) -> GenerationParams:
        """Candidate `k`'s sampling: ``temperature`` and a seed from the generation seed (in every result key) and
        `k`, so a resumed run samples the same candidates."""
        seed = int(content_hash({"defense": self.name, "seed": params.seed, "candidate": k}), 16) % SEED_RANGE
        return replace(params, temperature=self.temperature, seed=seed)

    def _align(self, target: Target, samples: Sequence[Sample], unsafe: list[int],
               params: GenerationParams) -> dict[int, tuple[Generation, int, list[float], float]]:
        """For each unsafe sample: (the least harmful candidate, its number, every candidate's score, their seconds)."""
        convs = [self.with_prefix(samples[i].turns) for i in unsafe]
        candidates = [self.call_model(target, convs, self.candidate_params(params, k), owners=unsafe, role="align")
                      for k in range(self.best_of)]  # one call per candidate: a call shares one seed
        texts = [[self._returned(c[j].text) for c in candidates] for j in range(len(unsafe))]
        verdicts = self._post_check(samples, [t for row in texts for t in row],
                                    [i for i in unsafe for _ in range(self.best_of)])
        out = {}
        for j, i in enumerate(unsafe):
            scores = [float(v.score) for v in verdicts[j * self.best_of:(j + 1) * self.best_of]]
            k = scores.index(min(scores))
            best = candidates[k][j]
            out[i] = (replace(best, text=texts[j][k]), k, [round(s, 6) for s in scores],
                      sum(c[j].seconds for c in candidates))
        return out

    def _returned(self, reply: str) -> str:
        """What the user gets: the prefix the model was shown as its own words, then what it wrote."""
        return f"{self.prefix.rstrip()} {reply.lstrip()}".rstrip()


def _verdict(v: Verdict | None) -> dict[str, Any] | None:
    return None if v is None else {"flag": bool(v.flag), "score": round(float(v.score), 6)}
