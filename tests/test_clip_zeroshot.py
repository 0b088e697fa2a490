"""Zero-shot classification: text embeddings cached by (model, classes, templates), template ensembles, accuracy
with Wilson intervals; ShapeCLIP classifies its clean held-out world."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clip_fixtures import shapeclip_backend

from safeglass.clip import backends, images, zeroshot

CLASSES = ["circle", "star", "heart"]


def test_cached_text_embeddings_are_reused_and_change_with_templates() -> None:
    b = backends.tiny_random("clip")
    cache = zeroshot.TextCache()
    first = cache.class_embeddings(b, CLASSES, ["a photo of a {}"])
    assert cache.encoded == 3
    again = cache.class_embeddings(b, CLASSES, ["a photo of a {}"])
    assert cache.encoded == 3 and again is first                       # nothing re-encoded
    other = cache.class_embeddings(b, CLASSES, ["a {}"])
    assert cache.encoded == 6 and not torch.allclose(other, first)     # a changed template misses
    cache.class_embeddings(b, CLASSES[:2], ["a photo of a {}"])
    assert cache.encoded == 8                                          # so do changed classes
    cache.class_embeddings(backends.tiny_random("clip", seed=5), CLASSES, ["a photo of a {}"])
    assert cache.encoded == 11                                         # and another model


def test_an_ensemble_is_the_normalised_mean_of_its_templates() -> None:
    b = backends.tiny_random("siglip")
    cache = zeroshot.TextCache()
    templates = ["a photo of a {}", "a large {}"]
    ens = cache.class_embeddings(b, CLASSES, templates)
    per = cache.per_template(b, CLASSES, templates)
    assert per.shape[:2] == (2, 3)
    mean = b.encode_text([t.format(c) for c in CLASSES for t in templates]).reshape(3, 2, -1).mean(1)
    assert torch.allclose(ens, mean / mean.norm(dim=-1, keepdim=True), atol=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        cache.class_embeddings(b, CLASSES, [])


def test_accuracy_has_a_wilson_interval() -> None:
    acc = zeroshot.accuracy(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]))
    assert (acc["k"], acc["n"], acc["rate"]) == (3, 4, 0.75)
    assert 0 < acc["ci_low"] < 0.75 < acc["ci_high"] < 1
    with pytest.raises(ValueError):
        zeroshot.accuracy(np.array([0]), np.array([0, 1]))


def test_shapeclip_classifies_its_clean_world() -> None:
    b = shapeclip_backend()
    d = images.shapeworld(200, seed=0, image_size=b.image_size)
    res = zeroshot.classify(b, d.images, d.labels, d.classes, ["a photo of a {}"])
    assert res["accuracy"]["rate"] >= 0.9 and res["accuracy"]["n"] == 200
    # the splits are deterministic by seed and differ from each other
    again = images.shapeworld(200, seed=0, image_size=b.image_size)
    assert np.array_equal(again.images, d.images)
    assert not np.array_equal(images.shapeworld(200, seed=0, image_size=64, split="fit").images, d.images)
