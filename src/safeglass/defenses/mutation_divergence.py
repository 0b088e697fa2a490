"""JailGuard (Zhang et al. 2023/2025, arXiv 2312.10766; code shiningrain/JailGuard): attacks are less robust than
benign inputs, so the replies to slightly mutated copies of an attack disagree more than those of a benign input.
Each sample is answered on N copies (copy 0 the unmodified input, copies 1..N-1 mutants), the divergence of the N
replies is measured, and a divergence above the threshold replaces the reply with a refusal; otherwise copy 0's
reply is returned.

The divergence follows JailGuard's code (``update_divergence``): the first 100 characters of each reply become a
vector, a cosine similarity matrix of the replies is built (clipped below at 0.01), each row is normalised into a
distribution, and the divergence is the largest KL divergence between two rows. JailGuard's vectors are spaCy
``en_core_web_md`` word-vector averages; here they are character 3-gram counts, which need no model but spread
similarities far wider (two English sentences on unrelated topics are ~0.8 alike in spaCy's vectors, ~0.2 in
3-grams), so the same KL means much less here and the default threshold is not the paper's 0.02 (see
:class:`JailGuard`).

All copies of all samples of a chunk go to the model in one ``generate`` call (traced as ``mutant``, mapped back to
their samples); the mutated images are saved with the run and shown in the report. Mutants are drawn from the
generation seed and the sample id only (smoothvlm's :func:`sample_rng`), so a resumed run, another chunking or
another worker count sends the model the same ones.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from safeglass.defenses.base import Defense
from safeglass.defenses.prompting import last_user_index
from safeglass.defenses.smoothvlm import PRINTABLE, perturb_pixels, sample_rng, swap_characters
from safeglass.types import Conversation, Generation, GenerationParams, ImageRef, Sample, Target

if TYPE_CHECKING:  # numpy and PIL load when mutants are made, not when a plan builds the defense
    import numpy as np

# geometric and colour mutators (JailGuard's image mutators, in PIL) and smoothvlm's pixel perturbations
IMAGE_MUTATORS = ("hflip", "vflip", "crop", "rotate", "blur", "posterize", "mask", "patch", "noise", "swap")
PIXEL_PERTURBATIONS = ("mask", "patch", "noise", "swap")  # smoothvlm's, at `rate`
TEXT_MUTATORS = ("replace", "insert", "delete", "punctuation")
MUTATE = ("auto", "both")
# JailGuard's default image policy draws rotation, blur or posterization; its text policy punctuation insertion,
# targeted insertion or translation (no translation offline; random insertion stands in for the targeted one)
DEFAULT_IMAGE_MUTATORS = ("rotate", "blur", "posterize")
DEFAULT_TEXT_MUTATORS = ("punctuation", "insert")
# JailGuard's ranges: a crop keeps 90-100 % of the area (RandomResizedCrop scale), a rotation is up to 180 degrees,
# a blur's sigma 0.1-2 (torchvision's GaussianBlur default), posterization keeps 1 or 2 bits a channel
CROP_AREA = (0.9, 1.0)
MAX_ROTATION = 180.0
BLUR_SIGMA = (0.1, 2.0)
POSTERIZE_BITS = (1, 2)
PUNCTUATION = (".", ",", "!", "?", ";", ":")  # AEDA's marks
NGRAM = 3
# output_filter's refusal, so that refusing defenses answer alike (written out: the options listing reads a default
# from this module's own constants)
DEFAULT_REFUSAL = "I'm sorry, but I can't help with that."


class JailGuard(Defense):
    """JailGuard: N copies of each sample (the input and N-1 mutants) answered in one batch; replies that diverge
    beyond ``threshold`` mark an attack, answered with a refusal; otherwise the unmodified input's reply is returned.

    What differs from the paper: copy 0 is the unmodified input, so N replies (one of them the one returned) cost N
    generations where the paper compares N = 8 mutants and then answers the input (N + 1); the replies are compared
    as character 3-gram vectors rather than spaCy word vectors, with JailGuard's KL-of-similarity-rows divergence on
    top, so the threshold is re-chosen (0.5: wording changes of one reply stay near 0.2, a split between refusals and
    answers is above 2; JailGuard's 0.02 is for spaCy's compressed similarities); each mutant draws one mutator from
    the pool uniformly (JailGuard's policy weights them); JailGuard's code also calls an input an attack when every
    reply carries a refusal keyword, which changes nothing scored here (copy 0's reply is then a refusal already)
    and is left out. The reply's ``extra["jailguard"]`` records copies, mutators, divergence, threshold and flag.

    Args:
        copies: N, the replies compared: copy 0 is the unmodified input (its reply is returned when nothing is
            flagged), copies 1..N-1 are mutants; at least 2.
        image_mutators: the pool each mutant of a sample with images draws one mutator from (uniformly): ``hflip``,
            ``vflip``, ``crop`` (90-100 % of the area, resized back), ``rotate`` (0-180 degrees), ``blur`` (Gaussian,
            sigma 0.1-2), ``posterize`` (1 or 2 bits a channel), or smoothvlm's ``mask``, ``patch``, ``noise``,
            ``swap`` at ``rate``.
        text_mutators: the pool each mutant of a text-only sample draws one mutator from, applied to the last user
            turn: ``replace`` (``rate`` of the characters replaced, SmoothLLM's swap), ``insert`` (``rate`` as many
            random characters inserted), ``delete`` (each word dropped with probability ``rate``) or ``punctuation``
            (AEDA: 1 to a third of the word count of punctuation marks inserted between words).
        rate: how much a ``mask``, ``patch``, ``swap`` (share of pixels or cells), ``noise`` (standard deviation, in
            [0, 1] units), ``replace``, ``insert`` (share of characters) or ``delete`` (share of words) mutator
            changes, in (0, 1].
        mutate: what a sample with images has mutated: ``auto`` (its images only, as JailGuard mutates the input's
            own modality; text-only samples get text mutators) or ``both`` (its images and its request text).
        threshold: the divergence (largest KL divergence between two rows of the replies' similarity matrix) above
            which the sample is flagged as an attack and refused; 0 and up.
        reply_chars: the characters of each reply compared (JailGuard compares the first 100).
        refusal: the text returned for a flagged sample.
    """

    name = "jailguard"

    def __init__(self, copies: int = 8,
                 image_mutators: str | Sequence[str] = DEFAULT_IMAGE_MUTATORS,
                 text_mutators: str | Sequence[str] = DEFAULT_TEXT_MUTATORS,
                 rate: float = 0.1, mutate: Literal["auto", "both"] = "auto", threshold: float = 0.5,
                 reply_chars: int = 100, refusal: str = DEFAULT_REFUSAL) -> None:
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 2:
            raise ValueError(f"jailguard: 'copies' must be a whole number >= 2 (the input, a mutant), not {copies!r}")
        self.image_mutators = _pool(image_mutators, IMAGE_MUTATORS, "image_mutators")
        self.text_mutators = _pool(text_mutators, TEXT_MUTATORS, "text_mutators")
        rate = float(rate)
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"jailguard: 'rate' must be in (0, 1], not {rate}")
        if mutate not in MUTATE:
            raise ValueError(f"jailguard: 'mutate' must be one of {', '.join(MUTATE)}, not {mutate!r}")
        if float(threshold) < 0.0:
            raise ValueError(f"jailguard: 'threshold' must be 0 or more, not {threshold}")
        if isinstance(reply_chars, bool) or not isinstance(reply_chars, int) or reply_chars < 1:
            raise ValueError(f"jailguard: 'reply_chars' must be a whole number >= 1, not {reply_chars!r}")
        self.copies, self.rate, self.mutate = copies, rate, mutate
        self.threshold, self.reply_chars, self.refusal = float(threshold), reply_chars, str(refusal)

    # --- the mutants ---------------------------------------------------------------------------------------------

    def copies_of(self, sample: Sample, seed: int) -> tuple[list[Conversation], list[str]]:
        """The N conversations sent for `sample` (copy 0 unmodified) and the mutator(s) each copy got."""
        rng = sample_rng(self.name, sample, seed)
        convs, used = [sample.turns], ["none"]
        decoded = None
        if sample.images:
            import numpy as np

            # decoded once: every mutant starts from the same pixels
            decoded = {i: np.asarray(i.pil().convert("RGB"), dtype=np.uint8) for i in sample.images}
        for _ in range(1, self.copies):
            conv, names = sample.turns, []
            if decoded is not None:
                kind = self.image_mutators[int(rng.integers(len(self.image_mutators)))]
                conv = tuple(replace(t, images=tuple(mutate_image(decoded[i], kind, self.rate, rng)
                                                     for i in t.images)) for t in conv)
                names.append(kind)
            if decoded is None or self.mutate == "both":
                kind = self.text_mutators[int(rng.integers(len(self.text_mutators)))]
                last = last_user_index(conv)
                if last >= 0:  # the request; a system prompt is the defender's, not the user's
                    conv = (*conv[:last], replace(conv[last], text=mutate_text(conv[last].text, kind, self.rate, rng)),
                            *conv[last + 1:])
                names.append(kind)
            convs.append(conv)
            used.append("+".join(names))
        return convs, used

    # --- answer, compare, decide ---------------------------------------------------------------------------------

    def generate(self, target: Target, samples: Sequence[Sample], params: GenerationParams) -> list[Generation]:
        if self.ctx is None:
            raise RuntimeError("jailguard needs a defense context (it is set up by the runner)")
        convs: list[Conversation] = []
        owners: list[int] = []
        mutators: list[list[str]] = []
        for i, s in enumerate(samples):
            copies, used = self.copies_of(s, params.seed)
            convs += copies
            owners += [i] * len(copies)
            mutators.append(used)
        gens = self.call_model(target, convs, params, owners=owners, role="mutant")  # one call for the whole chunk
        out = []
        for i in range(len(samples)):
            mine = gens[i * self.copies:(i + 1) * self.copies]
            div = reply_divergence([g.text for g in mine], self.reply_chars)
            flagged = div > self.threshold
            record = {"copies": self.copies, "mutators": mutators[i][1:], "divergence": round(div, 6),
                      "threshold": self.threshold, "flagged": flagged}
            first = mine[0]
            seconds = sum(g.seconds for g in mine)  # a reply costs its N copies
            if flagged:
                out.append(replace(first, text=self.refusal, finish_reason="filtered", seconds=seconds,
                                   extra={**first.extra, "jailguard": record, "withheld": True}))
            else:
                out.append(replace(first, seconds=seconds, extra={**first.extra, "jailguard": record}))
        return out


def _pool(value: str | Sequence[str], known: tuple[str, ...], option: str) -> tuple[str, ...]:
    """A mutator pool from one name or a list, checked against `known`."""
    pool = (value,) if isinstance(value, str) else tuple(value)
    bad = [m for m in pool if m not in known]
    if not pool or bad:
        raise ValueError(f"jailguard: '{option}' takes one or more of {', '.join(known)}"
                         f"{'; not ' + ', '.join(map(repr, bad)) if bad else ''}")
    return pool


def mutate_image(original: np.ndarray, kind: str, rate: float, rng: np.random.Generator) -> ImageRef:
    """One mutant of an RGB image given as a [H, W, 3] uint8 array, drawn from `rng`."""
    if kind in PIXEL_PERTURBATIONS:
        return perturb_pixels(original, kind, rate, rng)
    from PIL import Image, ImageFilter, ImageOps

    img = Image.fromarray(original)
    w, h = img.size
    if kind == "hflip":
        return ImageRef(ImageOps.mirror(img))
    if kind == "vflip":
        return ImageRef(ImageOps.flip(img))
    if kind == "crop":
        side = math.sqrt(rng.uniform(*CROP_AREA))  # the aspect ratio is kept; below 1, so a crop always cuts
        cw, ch = max(1, int(w * side)), max(1, int(h * side))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return ImageRef(img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BILINEAR))
    if kind == "rotate":
        return ImageRef(img.rotate(float(rng.uniform(0.0, MAX_ROTATION)), resample=Image.Resampling.BILINEAR))
    if kind == "blur":
        return ImageRef(img.filter(ImageFilter.GaussianBlur(float(rng.uniform(*BLUR_SIGMA)))))
    if kind == "posterize":
        return ImageRef(ImageOps.posterize(img, int(rng.choice(POSTERIZE_BITS))))
    raise ValueError(f"jailguard: unknown image mutator {kind!r}")


def mutate_text(text: str, kind: str, rate: float, rng: np.random.Generator) -> str:
    """One mutant of a request's text, drawn from `rng`."""
    if kind == "replace":
        return swap_characters(text, rate, rng)
    if kind == "insert":
        chars = list(text)
        for _ in range(max(1, int(len(text) * rate))):
            chars.insert(int(rng.integers(len(chars) + 1)), PRINTABLE[int(rng.integers(len(PRINTABLE)))])
        return "".join(chars)
    # word mutators keep the whitespace between the words that stay
    tokens = re.split(r"(\s+)", text)
    words = [j for j, t in enumerate(tokens) if t and not t.isspace()]
    if not words:
        return text
    if kind == "delete":
        drop = {j for j in words if rng.random() < rate}
        if len(drop) == len(words):  # EDA keeps one word
            drop.discard(words[int(rng.integers(len(words)))])
        return "".join(t for j, t in enumerate(tokens) if j not in drop)
    if kind == "punctuation":
        n = int(rng.integers(1, max(1, len(words) // 3) + 1))
        for j in sorted(rng.choice(words, size=min(n, len(words)), replace=False).tolist(), reverse=True):
            tokens.insert(j, PUNCTUATION[int(rng.integers(len(PUNCTUATION)))] + " ")
        return "".join(tokens)
    raise ValueError(f"jailguard: unknown text mutator {kind!r}")


def _ngrams(text: str, chars: int) -> Counter[str]:
    """Character 3-gram counts of the reply's first `chars` characters (lower case, whitespace collapsed)."""
    t = " " + " ".join(text[:chars].lower().split()) + " "
    return Counter(t[i:i + NGRAM] for i in range(max(1, len(t) - NGRAM + 1)))


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    dot = sum(v * b[k] for k, v in a.items() if k in b)
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0


def reply_divergence(replies: Sequence[str], chars: int = 100) -> float:
    """JailGuard's divergence of N replies: the largest KL divergence between two rows of their cosine similarity
    matrix (similarities clipped below at 0.01, each row normalised to sum to 1), on character 3-gram vectors of
    each reply's first `chars` characters. 0 when all replies are the same; it grows as they split into groups."""
    vectors = [_ngrams(r, chars) for r in replies]
    sims = [[max(0.01, _cosine(a, b)) for b in vectors] for a in vectors]
    rows = [[s / sum(row) for s in row] for row in sims]
    return max((sum(p * math.log(p / q) for p, q in zip(rows[i], rows[j], strict=True))
                for i in range(len(rows)) for j in range(len(rows)) if i != j), default=0.0)
