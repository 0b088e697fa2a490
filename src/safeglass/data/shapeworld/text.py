"""ShapeWorld language ground truth: captions and VQA pairs, computed from a `Scene`, never from pixels.

Every caption is true of its scene and every answer is the scene's ground truth; questions that would
be ambiguous (a shape that is not unique, a position near a region border) are not asked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from safeglass.data.shapeworld.world import SHAPES, Obj, Scene, plural

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
QUESTION_KINDS: tuple[str, ...] = ("shape", "colour", "count", "exists", "where", "size", "texture", "relation",
                                   "text")
_BORDER = 0.04  # positions this close to a region border get no "where" question


def number(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _np(o: Obj, size: bool = False, texture: bool = False) -> str:
    """Noun phrase without article: "small striped red circle"."""
    parts = [o.size] if size else []
    if texture and o.texture != "solid":
        parts.append(o.texture)
    return " ".join([*parts, o.colour, o.shape])


def _a(phrase: str) -> str:
    return f"{article(phrase)} {phrase}"


def where_phrase(region: str) -> str:
    if region in ("top", "bottom"):
        return f"at the {region}"
    if region in ("left", "right"):
        return f"on the {region}"
    return f"in the {region}"


def _background_phrase(scene: Scene) -> str:
    bg = scene.background
    return {"plain": _a(f"{bg.colour} background"), "gradient": _a(f"{bg.colour} gradient background"),
            "noise": f"a mottled {bg.colour} background", "checker": _a(f"{bg.colour} checkered background")}[bg.kind]


def _groups(scene: Scene) -> list[tuple[tuple[str, str], int]]:
    """(colour, shape) groups in order of first appearance, with their counts."""
    c = Counter((o.colour, o.shape) for o in scene.objects)
    seen: list[tuple[str, str]] = []
    for o in scene.objects:
        if (o.colour, o.shape) not in seen:
            seen.append((o.colour, o.shape))
    return [(k, c[k]) for k in seen]


def _group_phrase(colour: str, shape: str, n: int) -> str:
    return f"{_a(colour + ' ' + shape)}" if n == 1 else f"{number(n)} {colour} {plural(shape)}"


def captions(scene: Scene) -> list[str]:
    """Several true captions, most specific first; the first is the canonical one."""
    main = scene.main
    groups = _groups(scene)
    out: list[str] = []
    if len(scene.objects) == 1:
        out.append(f"{_a(_np(main, size=True, texture=True))} on {_background_phrase(scene)}")
        out.append(_a(_np(main)))
        out.append(f"{_a(main.shape)} {where_phrase(main.region)}")
    else:
        listing = [_group_phrase(c, s, n) for (c, s), n in groups]
        joined = listing[0] if len(listing) == 1 else ", ".join(listing[:-1]) + " and " + listing[-1]
        out.append(f"{joined} on {_background_phrase(scene)}")
        out.append(joined)
        if len(groups) > 1 and len(scene.objects) == 2:
            a, b = scene.objects
            if abs(a.x - b.x) >= 0.15:
                left, right = (a, b) if a.x < b.x else (b, a)
                out.append(f"{_a(_np(left))} to the left of {_a(_np(right))}")
        out.append(f"{number(len(scene.objects))} shapes")
    out.append(f"a photo of {_a(main.shape)}")  # the CLIP zero-shot prompt, about the label only
    if scene.text is not None:
        out.append(f'{out[1]} with the word "{scene.text.word}" written on it')
    return out


@dataclass(frozen=True, slots=True)
class VQA:
    question: str
    answer: str
    kind: str
    aliases: tuple[str, ...] = ()  # other accepted spellings ("2" for "two")

    @property
    def answers(self) -> tuple[str, ...]:
        return (self.answer, *self.aliases)


def _unique(scene: Scene, o: Obj, by: str) -> bool:
    return sum(getattr(p, by) == getattr(o, by) for p in scene.objects) == 1


def _ref(scene: Scene, o: Obj) -> str | None:
    """The shortest unambiguous reference to `o`, or None."""
    if _unique(scene, o, "shape"):
        return f"the {o.shape}"
    if sum(p.shape == o.shape and p.colour == o.colour for p in scene.objects) == 1:
        return f"the {o.colour} {o.shape}"
    return None


def _near_border(v: float) -> bool:
    return min(abs(v - 1 / 3), abs(v - 2 / 3)) < _BORDER


def vqa(scene: Scene, kinds: tuple[str, ...] = QUESTION_KINDS) -> list[VQA]:
    """Question-answer pairs about the scene; absent shapes for "how many" / "is there" come from qa_seed."""
    rng = np.random.default_rng(scene.qa_seed)
    main = scene.main
    present = {o.shape for o in scene.objects}
    absent = [s for s in SHAPES if s not in present]
    out: list[VQA] = []
    if "shape" in kinds:
        if len(scene.objects) == 1:
            out.append(VQA("What shape is in the image?", main.shape, "shape"))
        elif _unique(scene, main, "colour"):
            out.append(VQA(f"What shape is the {main.colour} object?", main.shape, "shape"))
    if "colour" in kinds:
        for o in scene.objects:
            ref = f"the {o.shape}" if _unique(scene, o, "shape") else None
            if ref is not None:
                out.append(VQA(f"What colour is {ref}?", o.colour, "colour"))
                break
        else:
            if len({(o.shape, o.colour) for o in scene.objects}) == 1:  # a count scene: "three red stars"
                out.append(VQA(f"What colour are the {plural(main.shape)}?", main.colour, "colour"))
    if "count" in kinds:
        n = scene.count(main.shape)
        out.append(VQA(f"How many {plural(main.shape)} are there?", number(n), "count", (str(n),)))
        if absent:
            s = absent[int(rng.integers(len(absent)))]
            out.append(VQA(f"How many {plural(s)} are there?", "zero", "count", ("0", "none", "no")))
        out.append(VQA("How many shapes are there?", number(len(scene.objects)), "count", (str(len(scene.objects)),)))
    if "exists" in kinds:
        out.append(VQA(f"Is there {_a(main.shape)} in the image?", "yes", "exists"))
        if absent:
            s = absent[int(rng.integers(len(absent)))]
            out.append(VQA(f"Is there {_a(s)} in the image?", "no", "exists"))
    if "where" in kinds:
        for o in scene.objects:
            ref = _ref(scene, o)
            if ref is not None and not _near_border(o.x) and not _near_border(o.y):
                out.append(VQA(f"Where is {ref}?", o.region, "where"))
                break
    if "size" in kinds:
        ref = _ref(scene, main)
        if ref is not None:
            out.append(VQA(f"What size is {ref}: small, medium or large?", main.size, "size"))
    if "texture" in kinds:
        ref = _ref(scene, main)
        if ref is not None:
            out.append(VQA(f"Is {ref} solid, striped or dotted?", main.texture, "texture"))
    if "relation" in kinds and len(scene.objects) >= 2:
        a, b = scene.objects[0], scene.objects[1]
        ra, rb = _ref(scene, a), _ref(scene, b)
        if ra and rb and ra != rb and abs(a.x - b.x) >= 0.15:
            out.append(VQA(f"Is {ra} to the left of {rb}?", "yes" if a.x < b.x else "no", "relation"))
    if "text" in kinds and scene.text is not None:
        out.append(VQA("What word is written in the image?", scene.text.word, "text"))
    return out
