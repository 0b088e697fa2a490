"""SD+TYPO: a scene image above the request's key phrase written as text, in one picture (MM-SafetyBench).

Liu et al., "MM-SafetyBench: A Benchmark for Safety Evaluation of Multimodal Large Language Models" (ECCV 2024).
Its strongest setting stacks a Stable Diffusion picture of the key phrase above the phrase in typography, and
replaces the request by a neutral rephrased instruction about what "the bottom of the image" shows. The scene
gives the phrase a visual context; the text carries nothing harmful.

Here the scene is not generated (no diffusion model at run time) but taken:

* from ``image_dir``, a folder of pictures (a user's own SD images, MM-SafetyBench's ``SD`` folder): one per
  sample, chosen by (seed, sample id), so the same sample always gets the same scene whatever else the folder
  run holds; the folder's names and contents enter the result key;
* by default, a ShapeWorld scene of ShapeCLIP's world (the typographic attack's scenes, same seed and sample id:
  the model organisms read these), rendered at ``image_size``.

The key phrase is found by the typographic attack's key words (``words``, ``variants``, ``first``); a request
that names none is written out whole. The text is the typographic attack's ``rephrase: mmsb`` instruction by the
word's type (or its whole-request instruction), pointed at "the bottom of the image" as MM-SafetyBench words it
for SD+TYPO. The phrase band is the typographic attack's plain canvas (black on white, its font), as wide as the
scene and as tall as the wrapped phrase needs. ``metadata["attack"]`` records the phrase, the scene (ShapeWorld
seed, or the file and its hash), the band's height, the font and the image's content hash;
``metadata["objective"]`` keeps the original request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safeglass.attacks.base import Attack
from safeglass.attacks.typographic import (
    MMSB_TEMPLATES,
    WHOLE_INSTRUCTION,
    TypographicAttack,
    font_record,
    plain_font_px,
    plain_text_height,
    plain_text_image,
)
from safeglass.hashing import content_hash, file_hash
from safeglass.types import ImageRef, Sample, Turn

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# MM-SafetyBench's SD+TYPO questions point at the bottom of the picture, where the phrase is written.
_IMAGE_SHOWS, _BOTTOM_SHOWS = "The image shows", "The bottom of the image shows"


def bottom_of_image(instruction: str) -> str:
    """A typographic instruction ("The image shows ...") pointed at the phrase under the scene."""
    if not instruction.startswith(_IMAGE_SHOWS):
        raise ValueError(f"sd-typo: expected an instruction opening with {_IMAGE_SHOWS!r}: {instruction!r}")
    return _BOTTOM_SHOWS + instruction[len(_IMAGE_SHOWS):]


def folder_images(folder: str | Path) -> list[Path]:
    """The pictures of `folder` (not its subfolders), sorted by name: the list a sample's scene is drawn from."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"sd-typo: image_dir {str(folder)!r} does not exist")
    found = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise ValueError(f"sd-typo: image_dir {str(folder)!r} holds no {', '.join(IMAGE_SUFFIXES)} file")
    return found


class SDTypoAttack(Attack):
    """MM-SafetyBench SD+TYPO: a scene above the key phrase in typography, and MM-SafetyBench's rephrased
    instruction as the text; see the module docstring.

    Args:
        image_dir: a folder of scene pictures, one chosen per sample by (seed, sample id); unset: ShapeWorld
            scenes of ShapeCLIP's world (for the model organisms).
        words: the key words to look for, whole-word and case-insensitive (default: ShapeCLIP's topic words);
            a request naming none is written out whole.
        variants: other forms -> the key word they stand for, e.g. {bomb: bombs} (default with the topic words:
            their singulars).
        first: which key word is written when a request names several: longest, or first (in ``words`` order).
        word_types: key word -> product or activity, choosing MM-SafetyBench's instruction (default: the topic
            words' types; words not listed are activities).
        image_size: width of the stacked image in pixels: the ShapeWorld scene's side (default 64), or the
            folder picture's width it is resized to (default: the picture's own size).
        text_size: size of the phrase as a share of the width, 0.05 to 0.6 (the typographic plain canvas's).
        seed: seed of the ShapeWorld scene, or of the folder picture drawn, per sample.
    """

    name = "sd-typo"
    access = "black-box"

    def __init__(self, image_dir: str | None = None, words: Sequence[str] | None = None,
                 variants: Mapping[str, str] | None = None, first: str = "longest",
                 word_types: Mapping[str, str] | None = None, image_size: int | None = None,
                 text_size: float = 0.22, seed: int = 0) -> None:
        # checked here too, so that the message names this attack, not the one it borrows from
        if first not in ("longest", "first"):
            raise ValueError(f"sd-typo: first must be 'longest' or 'first', not {first!r}")
        if not 0.05 <= text_size <= 0.6:
            raise ValueError(f"sd-typo: text_size {text_size} is outside 0.05..0.6 (a share of the width)")
        # the typographic attack holds the key words, the MM-SafetyBench types and the ShapeWorld scenes
        self.typo = TypographicAttack(words=words, variants=variants, first=first, rephrase="mmsb",
                                      word_types=word_types, text_size=text_size, seed=seed)
        if image_size is not None and image_size < 16:
            raise ValueError(f"sd-typo: image_size {image_size} is under 16 pixels")
        self.image_size = image_size
        self.text_size = float(text_size)
        self.seed = int(seed)
        self.images: list[Path] | None = None
        self.images_key: list[tuple[str, str]] | None = None
        if image_dir is not None:
            self.images = folder_images(image_dir)
            # by name and content: an edited or added picture changes which scene a sample gets, or the scene
            self.images_key = [(p.name, file_hash(str(p))) for p in self.images]

    def config(self) -> dict[str, Any]:
        cfg = self.option_key()
        # the words by what they are (the default list included), the folder by what it holds, not by its path
        cfg["words"] = content_hash({"words": self.typo.keywords.words, "variants": self.typo.keywords.variants},
                                    length=12)
        cfg["word_types"] = content_hash(self.typo.word_types, length=12)
        cfg.pop("variants", None)
        if self.images_key is not None:
            cfg["image_dir"] = content_hash(self.images_key, length=16)
        return cfg

    def _draw(self, sample_id: str, n: int) -> int:
        import numpy as np

        rng = np.random.default_rng([self.seed, int(content_hash({"id": sample_id}, length=8), 16)])
        return int(rng.integers(n))

    def scene(self, sample_id: str) -> tuple[Any, dict[str, Any]]:
        """(RGB PIL scene, what it is): the folder picture drawn for this sample, or its ShapeWorld scene."""
        from PIL import Image

        if self.images is None:
            from safeglass.data.shapeworld.world import render

            size = self.image_size or 64
            return Image.fromarray(render(self.typo.scene(sample_id), size)[0]), {
                "source": "shapeworld", "seed": self.seed, "size": size}
        path = self.images[self._draw(sample_id, len(self.images))]
        with Image.open(path) as opened:
            img = opened.convert("RGB")
        if self.image_size is not None and img.width != self.image_size:
            height = max(1, round(img.height * self.image_size / img.width))
            img = img.resize((self.image_size, height), Image.Resampling.BICUBIC)
        return img, {"source": "folder", "file": path.name, "sha256": file_hash(str(path)), "seed": self.seed,
                     "size": list(img.size)}

    def apply(self, sample: Sample, target: Any = None) -> Sample:
        idx = _last_user(sample)
        turn = sample.turns[idx]
        word = self.typo.choose(turn.text)
        if word is None:
            phrase, text = turn.text, bottom_of_image(WHOLE_INSTRUCTION)
        else:
            phrase = word
            text = bottom_of_image(MMSB_TEMPLATES[self.typo.word_types.get(word, "activity")])
        img, scene_info, band = self.render(phrase, sample.id)
        image = ImageRef(img)
        info: dict[str, Any] = {
            **self.config(), "applied": True, "word": word, "whole": word is None, "scene": scene_info,
            "band_px": band, "font": font_record(plain_font_px(img.width, self.text_size)),
            "image": image.content_hash()}
        # the stacked picture comes first: single-image models (the organisms) read the first image
        new_turn = Turn(turn.role, text, (image, *turn.images))
        turns = (*sample.turns[:idx], new_turn, *sample.turns[idx + 1:])
        metadata = {**sample.metadata, "attack": info}
        metadata.setdefault("objective", turn.text)
        return dataclasses.replace(sample, turns=turns, metadata=metadata)

    def render(self, phrase: str, sample_id: str) -> tuple[Any, dict[str, Any], int]:
        """(stacked PIL image, scene record, band height): the sample's scene on top, `phrase` in a band below."""
        from PIL import Image

        scene, info = self.scene(sample_id)
        width = scene.width
        band = plain_text_height(phrase, width, self.text_size)
        out = Image.new("RGB", (width, scene.height + band), "white")
        out.paste(scene, (0, 0))
        out.paste(plain_text_image(phrase, width, self.text_size, height=band), (0, scene.height))
        return out, info, band


def _last_user(sample: Sample) -> int:
    for i in range(len(sample.turns) - 1, -1, -1):
        if sample.turns[i].role == "user":
            return i
    raise ValueError(f"sample {sample.id}: the sd-typo attack needs a user turn")
