"""Per-head typographic attention and head ablation (Dyslexify) on tiny random CLIP / SigLIP and on ShapeCLIP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clip_fixtures import shapeclip_backend

from safeglass.clip import backends, dyslexify, heads, images, typography, zeroshot


def _imgs(n=3, side=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_recomputed_attention_equals_the_models_own(family) -> None:
    b = backends.tiny_random(family)
    a = heads.query_attention(b, _imgs())
    b.model.set_attn_implementation("eager")
    with torch.no_grad():
        ref = torch.stack(b.vision_model(pixel_values=b.pixels(_imgs()), output_attentions=True).attentions, 1)
    ref = ref[:, :, :, 0] if b.has_class_token else ref.mean(3)   # the class token's row, or the mean query
    assert np.allclose(a, ref.numpy(), atol=1e-5)
    assert np.allclose(a.sum(-1), 1, atol=1e-5)


def test_text_patches_cover_the_box() -> None:
    m = heads.text_patches([(0, 16, 16, 32), (20, 0, 40, 64)], 64, 16)
    assert np.flatnonzero(m[0]).tolist() == [1]
    assert np.flatnonzero(m[1]).tolist() == [4, 5, 6, 7, 8, 9, 10, 11]


def test_ablation_changes_only_the_class_token_and_leaves_no_hook() -> None:
    b = backends.tiny_random("clip")
    px = b.pixels(_imgs())
    with torch.no_grad():
        before = b.vision_model(pixel_values=px).last_hidden_state
        with heads.ablate(b, [(1, 0), (1, 3)]):                  # the last layer
            during = b.vision_model(pixel_values=px).last_hidden_state
        after = b.vision_model(pixel_values=px).last_hidden_state
    assert not torch.allclose(during[:, 0], before[:, 0])
    assert torch.allclose(during[:, 1:], before[:, 1:])          # patch tokens untouched
    assert torch.equal(after, before)
    with pytest.raises(ValueError, match="no head 9"), heads.ablate(b, [(0, 9)]):
        pass
    assert all(not layer.self_attn.out_proj._forward_pre_hooks for layer in b.vision_model.encoder.layers)


def test_siglip_ablation_reaches_every_position() -> None:
    b = backends.tiny_random("siglip")
    px = b.pixels(_imgs())
    with torch.no_grad():
        before = b.vision_model(pixel_values=px).last_hidden_state
        with heads.ablate(b, [(1, 2)]):
            during = b.vision_model(pixel_values=px).last_hidden_state
    assert not torch.allclose(during, before) and not torch.allclose(during[:, 5], before[:, 5])


def test_heads_are_ranked_by_score() -> None:
    assert heads.ranked(np.array([[0.1, 0.5], [0.3, 0.5]])) == [(0, 1), (1, 1), (1, 0), (0, 0)]


@pytest.fixture(scope="module")
def fitted():
    b = shapeclip_backend()
    d = images.shapeworld(200, seed=0, image_size=64, split="fit")
    a = typography.attack_set(d.images, d.labels, d.classes, typography.TypoSpec(), 0, d.scenes)
    scores = heads.typographic_scores(b, a.images, a.boxes)
    cache = zeroshot.TextCache()
    g = dyslexify.greedy(b, scores, d.images, a.images, d.labels, d.classes, ["a photo of a {}"], cache)
    return b, d, a, scores, cache, g


def test_typographic_scores_are_attention_mass_on_the_word(fitted) -> None:
    _, _, _, scores, _, _ = fitted
    assert scores.shape == (4, 4) and (scores >= 0).all() and (scores <= 1).all()
    assert scores.max() > 0.3                                  # some head reads the word


def test_kept_heads_are_only_those_that_raised_typographic_accuracy(fitted) -> None:
    b, d, a, _, cache, g = fitted
    assert g["kept"], "ShapeCLIP's typographic heads: none kept"
    assert [t["head"] for t in g["trials"] if t["kept"]] == g["kept"]
    assert all(t["gain"] > g["settings"]["min_gain"] for t in g["trials"] if t["kept"])
    # replayed: each kept head raised typographic accuracy on the fitting split over the heads kept before it
    kept = [tuple(h) for h in g["kept"]]
    prev = dyslexify.accuracies(b, d.images, a.images, d.labels, d.classes, ["a photo of a {}"], cache)[1]
    for i in range(len(kept)):
        clean, typo = dyslexify.accuracies(b, d.images, a.images, d.labels, d.classes, ["a photo of a {}"], cache,
                                           kept[:i + 1])
        assert typo > prev and g["fit_clean"] - clean <= g["settings"]["max_clean_drop"]
        prev = typo
    assert g["fit_typographic_ablated"] == pytest.approx(prev, abs=1e-4)
    assert g["fit_typographic_ablated"] > g["fit_typographic"] + 0.2


def test_greedy_stops_on_clean_loss_and_on_patience() -> None:
    b = backends.tiny_random("clip")
    d = images.shapeworld(40, seed=1, image_size=32)
    a = typography.attack_set(d.images, d.labels, d.classes, typography.TypoSpec(), 0, d.scenes)
    scores = np.random.default_rng(0).random((2, 4))
    cache = zeroshot.TextCache()
    strict = dyslexify.greedy(b, scores, d.images, a.images, d.labels, d.classes, ["a {}"], cache,
                              dyslexify.GreedySettings(max_clean_drop=-1.0))   # any trial "loses" clean accuracy
    assert strict["stopped"] == "clean accuracy fell" and len(strict["trials"]) == 1 and strict["kept"] == []
    lazy = dyslexify.greedy(b, scores, d.images, a.images, d.labels, d.classes, ["a {}"], cache,
                            dyslexify.GreedySettings(max_clean_drop=1.0, min_gain=2.0, patience=3))  # no gain counts
    assert lazy["stopped"] == "patience" and len(lazy["trials"]) == 3 and lazy["kept"] == []
    assert dyslexify.recovery(0.9, 0.5, 0.7) == pytest.approx(0.5)
    assert dyslexify.recovery(0.5, 0.6, 0.7) is None
