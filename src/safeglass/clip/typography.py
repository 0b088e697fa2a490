"""The typographic attack on CLIP images: a word written on an image, by ShapeWorld's text renderer (the one that
wrote ShapeCLIP's training words and the `typographic` attack's images), on ShapeWorld scenes or on any square image.

A `TypoSpec` says what is written and how (word, font, size, colour, opacity, position, post-it note); `write`
returns the attacked image with the box outside which no pixel changed, the glyph mask and the share of the image
the note covers (SCAM logs the post-it area). The word `wrong-class` draws, per image, a class name that is not
the image's label (seeded): ImageNet-typo's attack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from safeglass.data.shapeworld.world import COLOURS, FONTS, TextSpec, draw_text

WRONG_CLASS = "wrong-class"
# Named centres as fractions of the side. "auto" is, on a ShapeWorld scene, the band covering least of the objects
# (where ShapeCLIP's training words were) and elsewhere the centre; "on-object" (over the main object) needs a scene.
POSITIONS: dict[str, tuple[float, float]] = {"center": (0.5, 0.5), "top": (0.5, 0.14), "bottom": (0.5, 0.86)}
SCENE_POSITIONS = ("auto", "on-object")
NEEDS_SCENE = ("on-object",)


@dataclass(frozen=True)
class TypoSpec:
    """How the attack word is written. size: font size as a share of the side; colour None: black or white,
    whichever stands out from what is under the word (black on a note); position: a name of POSITIONS, auto
    (see POSITIONS), on-object (scenes only), random (a seeded centre per image) or an (x, y) centre as fractions."""

    word: str = WRONG_CLASS
    font: str = "sans"
    size: float = 0.22
    colour: str | None = None
    opacity: float = 1.0
    position: str | tuple[float, float] = "auto"
    postit: bool = False

    def __post_init__(self) -> None:
        if self.font not in FONTS:
            raise ValueError(f"typographic: unknown font {self.font!r}; known: {', '.join(FONTS)}")
        if self.colour is not None and self.colour not in COLOURS:
            raise ValueError(f"typographic: unknown colour {self.colour!r}; known: {', '.join(COLOURS)}")
        if not 0.05 <= self.size <= 0.6:
            raise ValueError(f"typographic: size {self.size} is outside 0.05..0.6 (a share of the side)")
        if not 0.0 < self.opacity <= 1.0:
            raise ValueError(f"typographic: opacity {self.opacity} is outside (0, 1]")
        if isinstance(self.position, str) and self.position not in (*POSITIONS, *SCENE_POSITIONS, "random"):
            raise ValueError(f"typographic: unknown position {self.position!r}; known: "
                             f"{', '.join((*POSITIONS, *SCENE_POSITIONS, 'random'))} or [x, y]")

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        d["position"] = list(self.position) if isinstance(self.position, tuple) else self.position
        return d


@dataclass(frozen=True)
class Written:
    """One attacked image and where its word is."""

    image: np.ndarray                  # uint8 (S, S, 3)
    word: str
    box: tuple[int, int, int, int]     # (y0, x0, y1, x1): no pixel outside it differs from the clean image
    text_mask: np.ndarray              # bool (S, S): glyph coverage >= 0.5
    postit_area: float                 # share of the image under the note (0 without one)
    spec: TextSpec                     # what was drawn, resolved (centre, colour)


def _centre(spec: TypoSpec, rng: np.random.Generator | None) -> tuple[float, float]:
    if isinstance(spec.position, tuple):
        return spec.position
    if spec.position == "random":
        r = rng if rng is not None else np.random.default_rng(0)
        return float(r.uniform(0.25, 0.75)), float(r.uniform(0.15, 0.85))
    if spec.position == "auto":
        return POSITIONS["center"]
    if spec.position in NEEDS_SCENE:
        raise ValueError(f"typographic: position {spec.position!r} needs a ShapeWorld scene; on other images use "
                         f"{', '.join(POSITIONS)}, random or [x, y]")
    return POSITIONS[spec.position]


def _colour_under(image: np.ndarray, x: float, y: float) -> str:
    s = image.shape[0]
    patch = image[int(max(0, y - 0.1) * s):int(min(1, y + 0.1) * s) + 1, :].reshape(-1, 3).astype(np.float32)
    luma = float((patch @ np.array([0.299, 0.587, 0.114], np.float32)).mean())
    return "black" if luma > 110 else "white"


def text_spec(image: np.ndarray, word: str, spec: TypoSpec, rng: np.random.Generator | None = None,
              scene: Any = None) -> TextSpec:
    """The renderer's TextSpec for `word` on `image`: centre and colour resolved (ShapeWorld's `with_text` resolves
    them on a scene, so the scene positions and colours are the ones ShapeCLIP was trained on)."""
    if scene is not None and (spec.position in SCENE_POSITIONS or isinstance(spec.position, tuple)
                              or spec.position in POSITIONS):
        from safeglass.data.shapeworld.world import with_text

        return with_text(scene, word, font=spec.font, size=spec.size, colour=spec.colour, opacity=spec.opacity,
                         position=spec.position, postit=spec.postit).text
    x, y = _centre(spec, rng)
    colour = spec.colour or ("black" if spec.postit else _colour_under(image, x, y))
    return TextSpec(word, spec.font, spec.size, colour, spec.opacity, x, y, spec.postit)


def write(image: np.ndarray, word: str, spec: TypoSpec, rng: np.random.Generator | None = None,
          scene: Any = None) -> Written:
    """`image` (square uint8) with `word` written on it, as `spec` says; the input is not changed."""
    ts = text_spec(image, word, spec, rng, scene)
    out = np.array(image, dtype=np.uint8, copy=True)
    text_m, postit_m, box = draw_text(out, ts)
    return Written(out, word, box, text_m, float(postit_m.mean()), ts)


def attack_words(labels: Sequence[int], classes: Sequence[str], word: str, seed: int) -> list[str]:
    """The word written on each image: `word` itself, or for `wrong-class` a seeded class name other than the
    image's label."""
    if word != WRONG_CLASS:
        return [word] * len(labels)
    if len(classes) < 2:
        raise ValueError("typographic: wrong-class needs at least two classes")
    rng = np.random.default_rng([seed, 19])
    out = []
    for y in labels:
        others = [c for i, c in enumerate(classes) if i != y]
        out.append(others[int(rng.integers(len(others)))])
    return out


@dataclass(frozen=True)
class AttackedSet:
    images: np.ndarray                       # uint8 (N, S, S, 3)
    words: list[str]
    boxes: list[tuple[int, int, int, int]]
    postit_area: np.ndarray                  # (N,) share of each image under a note
    text_area: np.ndarray                    # (N,) share of each image inside its box

    def summary(self) -> dict[str, Any]:
        return {"n": len(self.words), "mean_postit_area": round(float(self.postit_area.mean()), 4),
                "mean_box_area": round(float(self.text_area.mean()), 4)}


def attack_set(images: np.ndarray, labels: Sequence[int], classes: Sequence[str], spec: TypoSpec, seed: int,
               scenes: Sequence[Any] | None = None) -> AttackedSet:
    """Every image with its attack word written on it (seeded: words and random positions follow `seed`)."""
    words = attack_words(labels, classes, spec.word, seed)
    rng = np.random.default_rng([seed, 23])
    done = [write(img, w, spec, rng, scenes[i] if scenes is not None else None)
            for i, (img, w) in enumerate(zip(images, words))]
    side = images.shape[1]
    area = np.array([(b[2] - b[0]) * (b[3] - b[1]) / side ** 2 for b in (d.box for d in done)], np.float64)
    return AttackedSet(np.stack([d.image for d in done]) if done else images[:0].copy(), words,
                       [d.box for d in done], np.array([d.postit_area for d in done]), area)
