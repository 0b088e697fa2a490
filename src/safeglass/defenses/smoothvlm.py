"""SmoothVLM (Sun et al. 2024, arXiv 2405.10529): randomised smoothing of the image against patched visual prompt
injectors. Each sample is answered on N randomly perturbed copies of its images, a refusal judge reads every copy's
reply, and the majority decides: a refusal if most copies refused, else one of the answers.

There is no official code; this follows the paper's description (pixel-wise randomisation of N copies, majority
vote) and SmoothLLM's public code for what the paper leaves open (Robey et al. 2023: a tie is not a jailbreak,
and the reply returned is one consistent with the majority). The vote is over judged refusals, not over exact
strings: two refusals worded differently are the same vote.

All copies of all samples of a chunk go to the model in one ``generate`` call (a batched model answers them
together, which is most of what makes N copies affordable), traced under the sample each copy belongs to; the
perturbed images are saved with the run and shown in the report's sample browser. The copies are drawn from the
generation seed and the sample id only, so a resumed run, another chunking or another worker count sends the
model the same copies.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from safeglass.defenses.base import Defense
from safeglass.defenses.context import DefenseContext, Uses
from safeglass.hashing import content_hash
from safeglass.types import Conversation, Generation, GenerationParams, ImageRef, JudgeInput, Sample, Target, Turn

if TYPE_CHECKING:  # numpy and PIL load when copies are made, not when a plan builds the defense
    import numpy as np

PERTURBATIONS = ("mask", "patch", "noise", "swap")
TEXT_ONLY = ("once", "swap")
PATCH_GRID = 16  # patch masking cuts each side into 16 cells: 14 px cells on a 224 px image, a ViT patch's size
# what SmoothLLM's swap draws replacement characters from
PRINTABLE = string.printable


class SmoothVLM(Defense):
    """SmoothVLM: N randomly perturbed copies of each image answered in one batch, majority vote over judged refusals.

    The paper (arXiv 2405.10529) masks a random share of the image's pixels in each of N copies and takes the
    majority; it has no public code, and safeglass's notes record no exact N or masking rate from it, so the
    defaults follow its text analogue SmoothLLM (N from 2 to 10, 5-20 % of the characters perturbed; its code's
    default 10 %), with N = 8 to keep a tie possible and a batch of copies a power of two.

    The vote: a copy counts as refused when the judge flags its reply. The sample is refused when at least half of
    its copies refused (a tie refuses, as SmoothLLM's code calls a jailbreak only above half); the reply returned
    is then the first refusing copy's own reply, else the first non-refusing copy's reply (first: lowest copy
    number, so the same copies give the same reply). The reply's ``extra["smoothvlm"]`` records the copies, the
    refusals counted, the verdict and the copy chosen; its seconds are the sum over its copies.

    Text-only samples (no image) are answered once, unperturbed, with no vote (``text_only: once``, the default):
    SmoothVLM is a defense of the image, and perturbing the request's characters is another defense (SmoothLLM),
    which ``text_only: swap`` applies (the last user turn's characters swapped at ``rate``, N copies, the same vote).

    Args:
        copies: N, the perturbed copies of each sample answered (and voted on); the paper votes over N copies.
        perturbation: how a copy's images are perturbed: ``mask`` (each pixel blacked out with probability ``rate``,
            the paper's pixel-wise masking), ``patch`` (the image cut into a 16 x 16 grid, each cell blacked out with
            probability ``rate``), ``noise`` (Gaussian noise of standard deviation ``rate`` on every pixel, in
            [0, 1] units) or ``swap`` (each pixel replaced by a random colour with probability ``rate``, SmoothLLM's
            swap carried to pixels).
        rate: the share of pixels (cells for ``patch``, characters for text swaps) perturbed in each copy, in
            (0, 1]; for ``noise``, the noise's standard deviation.
        judge: the refusal judge that reads each copy's reply, a registry name or ``{name, args}``; it must measure
            refusal (keyword-refusal, proxy-refusal, llm-judge with the refusal rubric).
        text_only: what a sample without an image gets: ``once`` (answered once, unperturbed, no vote) or
            ``swap`` (SmoothLLM: N copies with ``rate`` of the last user turn's characters swapped, then the vote).
    """

    name = "smoothvlm"

    def __init__(self, copies: int = 8, perturbation: Literal["mask", "patch", "noise", "swap"] = "mask",
                 rate: float = 0.1, judge: Any = "keyword-refusal",
                 text_only: Literal["once", "swap"] = "once") -> None:
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise ValueError(f"smoothvlm: 'copies' must be a whole number >= 1, not {copies!r}")
        if perturbation not in PERTURBATIONS:
            raise ValueError(f"smoothvlm: 'perturbation' must be one of {', '.join(PERTURBATIONS)}, "
                             f"not {perturbation!r}")
        if text_only not in TEXT_ONLY:
            raise ValueError(f"smoothvlm: 'text_only' must be one of {', '.join(TEXT_ONLY)}, not {text_only!r}")
        rate = float(rate)
        if not (0.0 < rate <= 1.0 or (perturbation == "noise" and rate > 0.0)):
            raise ValueError(f"smoothvlm: 'rate' must be in (0, 1] for {perturbation} (a share), not {rate}")
        self.copies, self.perturbation, self.rate, self.text_only = copies, perturbation, rate, text_only
        self.judge_ref = Uses.parse(judge, "judges", "vote judge", "smoothvlm: option 'judge'", needs=("refusal",))

    def uses(self) -> list[Uses]:
        return [self.judge_ref]

    def setup(self, ctx: DefenseContext) -> None:
        super().setup(ctx)
        measure = getattr(ctx.component(self.judge_ref), "measure", None)
        if measure != "refusal":
            raise ValueError(f"smoothvlm: judge {self.judge_ref.name} measures {measure!r}; the vote needs one that "
                             "measures refusal")

    # --- the copies ----------------------------------------------------------------------------------------------

    def rng_for(self, sample: Sample, seed: int) -> np.random.Generator:
        """The sample's own random stream (:func:`sample_rng`)."""
        return sample_rng(self.name, sample, seed)

    def votes_on(self, sample: Sample) -> bool:
        """Whether `sample` is answered on N copies and voted on (it has an image, or text-only samples are swapped)."""
        return bool(sample.images) or self.text_only == "swap"

    def copies_of(self, sample: Sample, seed: int) -> list[Conversation]:
        """The conversations sent for `sample`: N perturbed copies, or the sample itself once (text only, ``once``)."""
        if not self.votes_on(sample):
            return [sample.turns]
        rng = self.rng_for(sample, seed)
        if not sample.images:
            return [self._swap_text(sample.turns, rng) for _ in range(self.copies)]
        import numpy as np

        # decoded once: every copy starts from the same pixels
        decoded = {i: np.asarray(i.pil().convert("RGB"), dtype=np.uint8) for i in sample.images}
        return [tuple(replace(t, images=tuple(self.perturb(decoded[i], rng) for i in t.images)) for t in sample.turns)
                for _ in range(self.copies)]

    def perturb(self, original: np.ndarray, rng: np.random.Generator) -> ImageRef:
        """One perturbed copy of an RGB image given as a [H, W, 3] uint8 array, drawn from `rng`."""
        return perturb_pixels(original, self.perturbation, self.rate, rng)

    def _swap_text(self, conv: Conversation, rng: np.random.Generator) -> Conversation:
        """SmoothLLM's swap on the last user turn (the request; a system prompt is the defender's, not the user's)."""
        users = [i for i, t in enumerate(conv) if t.role == "user"]
        last = users[-1] if users else len(conv) - 1
        swapped = Turn(conv[last].role, swap_characters(conv[last].text, self.rate, rng), conv[last].images)
        return (*conv[:last], swapped, *conv[last + 1:])

    # --- answer and vote -----------------------------------------------------------------------------------------

    def generate(self, target: Target, samples: Sequence[Sample], params: GenerationParams) -> list[Generation]:
        if self.ctx is None:
            raise RuntimeError("smoothvlm needs a defense context (it is set up by the runner)")
        convs: list[Conversation] = []
        owners: list[int] = []
        spans: list[tuple[int, int, bool]] = []  # per sample: first copy, number of copies, voted
        for i, s in enumerate(samples):
            copies = self.copies_of(s, params.seed)
            spans.append((len(convs), len(copies), self.votes_on(s)))
            convs += copies
            owners += [i] * len(copies)
        gens = self.call_model(target, convs, params, owners=owners, role="copy")  # one call for the whole chunk
        voted = [j for start, n, vote in spans if vote for j in range(start, start + n)]
        refused = dict.fromkeys(range(len(convs)), False)
        if voted:
            items = [self._judge_input(samples[owners[j]], convs[j], gens[j]) for j in voted]
            verdicts = self.ctx.judge(self.judge_ref.role, self.judge_ref, items, owners=[owners[j] for j in voted])
            refused.update({j: bool(v.flag) for j, v in zip(voted, verdicts, strict=True)})
        return [self._vote(gens[start:start + n], [refused[j] for j in range(start, start + n)]) if vote
                else gens[start] for start, n, vote in spans]

    @staticmethod
    def _judge_input(sample: Sample, conv: Conversation, gen: Generation) -> JudgeInput:
        objective = sample.metadata.get("objective")
        prompt = objective if isinstance(objective, str) and objective else sample.prompt
        return JudgeInput(prompt, gen.text, images=tuple(i for t in conv for i in t.images), kind=sample.kind,
                          category=sample.category, reference=dict(sample.metadata))

    @staticmethod
    def _vote(gens: Sequence[Generation], refused: Sequence[bool]) -> Generation:
        """The majority's reply: a tie refuses; the first copy (lowest number) on the winning side is returned."""
        n, k = len(gens), sum(refused)
        verdict = 2 * k >= n
        chosen = refused.index(verdict)
        g = gens[chosen]
        vote = {"copies": n, "refused": k, "verdict": "refused" if verdict else "answered", "chosen": chosen}
        return replace(g, seconds=sum(x.seconds for x in gens), extra={**g.extra, "smoothvlm": vote})


# --- shared with other defenses that perturb their input (jailguard's mutants) -----------------------------------


def sample_rng(defense: str, sample: Sample, seed: int) -> np.random.Generator:
    """A sample's own random stream for `defense`: from the generation seed (it enters every result key, so the
    copies a key names never change) and the sample id, never from the batch, chunk or worker it lands in."""
    import numpy as np

    return np.random.default_rng(int(content_hash({"defense": defense, "seed": seed, "sample": sample.id}), 16))


def perturb_pixels(original: np.ndarray, perturbation: str, rate: float, rng: np.random.Generator) -> ImageRef:
    """One perturbed copy of an RGB image given as a [H, W, 3] uint8 array, drawn from `rng`: ``mask``, ``patch``,
    ``noise`` or ``swap`` at `rate` (see :class:`SmoothVLM`)."""
    import numpy as np
    from PIL import Image

    pixels = original.copy()
    h, w, _ = pixels.shape
    if perturbation == "noise":
        noisy = pixels / 255.0 + rng.normal(0.0, rate, pixels.shape)
        pixels = np.rint(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif perturbation == "patch":
        cells = rng.random((PATCH_GRID, PATCH_GRID)) < rate
        # each pixel's cell, so the grid covers any size (cells of a tiny image may be one pixel or none)
        rows = np.arange(h) * PATCH_GRID // h
        cols = np.arange(w) * PATCH_GRID // w
        pixels[cells[rows[:, None], cols[None, :]]] = 0
    else:
        chosen = rng.random((h, w)) < rate
        if perturbation == "mask":
            pixels[chosen] = 0
        else:  # swap
            pixels[chosen] = rng.integers(0, 256, (int(chosen.sum()), 3), dtype=np.uint8)
    return ImageRef(Image.fromarray(pixels))


def swap_characters(text: str, rate: float, rng: np.random.Generator) -> str:
    """SmoothLLM's swap: ``rate`` of `text`'s characters, at distinct places, replaced by random printable ones."""
    chars = list(text)
    k = int(len(chars) * rate)
    for pos in rng.choice(len(chars), size=k, replace=False) if k else ():
        chars[int(pos)] = PRINTABLE[int(rng.integers(len(PRINTABLE)))]
    return "".join(chars)
