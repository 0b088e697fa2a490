"""Similarity of a request (and its image) to the training requests of a prompt pool, with nothing to load.

AdaShield-A's code retrieves a defense prompt by the cosine of CLIP embeddings (image and text, each L2-normalised,
concatenated and normalised again). A defense cannot reach a judge's embedder (judges come after defenses in the
pipeline), and a CLIP download would break offline runs, so this module stands in with two torch-free embeddings:

- text: TF-IDF over content words (English stop words dropped, sublinear term frequency, smoothed IDF
  fitted on the pool's training requests; a word the pool never saw gets the highest IDF, so an unrelated request
  is not matched on the few words it shares), L2-normalised;
- image: the picture shrunk to 16 x 16 RGB, centred on its mean and L2-normalised, whose cosine is the Pearson
  correlation of the two thumbnails: a layout signal (a white card of text against a photograph), not semantics.

When both sides have an image the similarity is the cosine of the concatenated unit embeddings, as AdaShield's
(the mean of the text and image cosines); otherwise the text cosine alone, so that a text-only request is compared
on what it has rather than penalised for the image it lacks. A lexical embedding matches requests that share words
with a training request; a paraphrase with none in common scores 0 where CLIP would still see it as close.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from safeglass.types import ImageRef

THUMB = 16  # side of the image thumbnail: 16 x 16 x 3 = 768 numbers, as long as a CLIP ViT-L embedding
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Words too common to say what a request is about; without them "how to ..." would match every "how to ...".
STOP_WORDS = frozenset("""
a about above after again all also am an and any are as at be because been before being below between both but by
can could did do does doing down during each few for from further had has have having he her here hers him his how
i if in into is it its itself just me more most my no nor not now of off on once only or other our ours out over own
please same she should so some such than that the their theirs them then there these they this those through to
too under until up very was we were what when where which while who whom why will with would you your yours
""".split())


def terms(text: str) -> list[str]:
    """The request's content words, lower-cased (single words: a paraphrase keeps more of them than of pairs)."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


def thumbnail(image: ImageRef) -> list[float]:
    """The image as a centred, L2-normalised 16 x 16 RGB vector; all zeros for a uniform image."""
    from PIL import Image

    pil = image.pil().convert("RGB").resize((THUMB, THUMB), Image.Resampling.BILINEAR)
    values = [c / 255.0 for px in pil.getdata() for c in px]
    mean = sum(values) / len(values)
    centred = [v - mean for v in values]
    norm = math.sqrt(sum(v * v for v in centred))
    return [round(v / norm, 6) for v in centred] if norm > 1e-9 else [0.0] * len(centred)


@dataclass(frozen=True)
class Key:
    """What a pool entry is retrieved by: its training request's text and, if it had one, its image's thumbnail."""

    text: str
    image: tuple[float, ...] | None = None


class Index:
    """The pool's keys, embedded once; :meth:`nearest` gives the most similar key of a request."""

    def __init__(self, keys: Sequence[Key]) -> None:
        self.keys = list(keys)
        docs = [Counter(terms(k.text)) for k in self.keys]
        df: Counter[str] = Counter(t for d in docs for t in d)
        self._n = len(docs)
        self._df = df
        self._texts = [self._vector(d) for d in docs]
        self._images = [_unit(k.image) for k in self.keys]

    def _idf(self, term: str) -> float:
        return math.log((1 + self._n) / (1 + self._df.get(term, 0))) + 1.0

    def _vector(self, counts: Counter[str]) -> dict[str, float]:
        weights = {t: (1.0 + math.log(c)) * self._idf(t) for t, c in counts.items()}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {t: w / norm for t, w in weights.items()} if norm > 0 else {}

    def similarities(self, text: str, image: Sequence[float] | None = None) -> list[float]:
        """The request's similarity to every key, in pool order."""
        query = self._vector(Counter(terms(text)))
        picture = _unit(image)
        out = []
        for vec, key_image in zip(self._texts, self._images, strict=True):
            text_cos = sum(w * vec.get(t, 0.0) for t, w in query.items())
            if picture is not None and key_image is not None:
                out.append((text_cos + _dot(picture, key_image)) / 2.0)
            else:
                out.append(text_cos)
        return out

    def nearest(self, text: str, image: Sequence[float] | None = None) -> tuple[int, float] | None:
        """(position, similarity) of the most similar key; the first of equals (AdaShield's code draws one at random,
        which a resumed run could not reproduce). None for an empty pool."""
        sims = self.similarities(text, image)
        if not sims:
            return None
        best = max(range(len(sims)), key=lambda i: (sims[i], -i))
        return best, sims[best]


def _unit(vec: Iterable[float] | None) -> tuple[float, ...] | None:
    """`vec` normalised, or None when it is absent or all zeros (no image, or a uniform one: nothing to compare)."""
    if vec is None:
        return None
    values = tuple(float(v) for v in vec)
    norm = math.sqrt(sum(v * v for v in values))
    return tuple(v / norm for v in values) if norm > 1e-9 else None


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        return 0.0  # thumbnails of another size (a hand-written pool): no image evidence either way
    return sum(x * y for x, y in zip(a, b, strict=True))
