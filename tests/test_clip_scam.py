"""The SCAM protocol for CLIP: a two-way object-vs-attack-word choice averaged over templates."""

from __future__ import annotations

import numpy as np
import pytest
from clip_fixtures import shapeclip_backend

from safeglass.clip import backends, images, scam, typography, zeroshot
from safeglass.organisms.shapeclip import CLIP_SHAPES


@pytest.fixture(scope="module")
def shapeclip():
    return shapeclip_backend()


def test_scam_picks_the_attack_word_when_the_image_is_the_word_alone(shapeclip) -> None:
    imgs, objects, words = [], [], []
    for w in CLIP_SHAPES:
        for o in CLIP_SHAPES:
            if o != w:  # a grey canvas with only the word, where ShapeCLIP's training images carried words
                canvas = np.full((64, 64, 3), 128, np.uint8)
                imgs.append(typography.write(canvas, w, typography.TypoSpec(word=w, position="bottom")).image)
                objects.append(o)
                words.append(w)
    r = scam.scam(shapeclip, np.stack(imgs), objects, words, zeroshot.SHAPECLIP_TEMPLATES, zeroshot.TextCache())
    assert r["attack_rate"] >= 0.9 and r["object_majority"]["rate"] <= 0.1
    assert set(r["per_template"]) == set(zeroshot.SHAPECLIP_TEMPLATES)
    assert r["object_rate"] + r["attack_rate"] <= 1


def test_scam_picks_the_object_when_no_word_is_written(shapeclip) -> None:
    d = images.shapeworld(120, seed=0, image_size=64)
    words = typography.attack_words(d.labels, d.classes, "wrong-class", seed=0)
    objects = [d.classes[i] for i in d.labels]
    r = scam.scam(shapeclip, d.images, objects, words, zeroshot.SHAPECLIP_TEMPLATES, zeroshot.TextCache())
    assert r["object_rate"] >= 0.9
    attacked = typography.attack_set(d.images, d.labels, d.classes, typography.TypoSpec(), 0, d.scenes)
    hit = scam.scam(shapeclip, attacked.images, objects, words, zeroshot.SHAPECLIP_TEMPLATES, zeroshot.TextCache())
    assert hit["object_rate"] < r["object_rate"] - 0.2       # the written word pulls the choice


def test_the_template_mean_and_the_inputs_are_checked() -> None:
    b = backends.tiny_random("siglip")
    imgs = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    r = scam.scam(b, imgs, ["circle"] * 4, ["star"] * 4, ["a {}", "the {}"], zeroshot.TextCache())
    assert r["object_rate"] == pytest.approx(np.mean(list(r["per_template"].values())), abs=1e-3)
    with pytest.raises(ValueError, match="tie"):
        scam.scam(b, imgs, ["circle"] * 4, ["circle"] * 4, ["a {}"], zeroshot.TextCache())
    with pytest.raises(ValueError, match="one object label"):
        scam.scam(b, imgs, ["circle"] * 3, ["star"] * 4, ["a {}"], zeroshot.TextCache())
