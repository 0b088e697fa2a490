"""Patch attribution maps (clip/attribution.py): integrated gradients per patch add up to the score gap, a patch
whose pixels never reach the embedding gets exactly 0, the failures chosen are the worst ones, and the pictures
are PNG files of the expected size."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from safeglass.clip import pictures
from safeglass.clip.attribution import patch_attribution, worst_failures
from safeglass.clip.backends import tiny_random
from safeglass.clip.zeroshot import TextCache

CLASSES = ("circle", "square", "star")


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _text(b, n: int) -> torch.Tensor:
    emb = TextCache().class_embeddings(b, CLASSES, ["a photo of a {}"])
    return emb[torch.arange(n) % len(CLASSES)]


def test_patch_maps_add_up_to_the_score_gap() -> None:
    b = tiny_random("clip", seed=1)
    imgs = _images(3)
    maps, gaps = patch_attribution(b, imgs, _text(b, 3), steps=64)
    assert maps.shape == (3, 4, 4)                       # 32 px, patch 8
    np.testing.assert_allclose(maps.sum((1, 2)), gaps, rtol=0.05, atol=2e-3 * np.abs(gaps).max())
    assert np.abs(maps).max() > 0 and not np.allclose(maps[0], maps[0].mean())


class OnePatchSees(type(tiny_random("clip"))):
    """The tiny model, with every pixel outside patch (row 1, col 2) zeroed (the baseline) before the model."""

    def encode_pixels(self, pixels):
        mask = torch.zeros_like(pixels)
        mask[..., 8:16, 16:24] = 1.0
        return super().encode_pixels(pixels * mask)


def test_a_patch_that_does_not_reach_the_embedding_gets_zero() -> None:
    t = tiny_random("clip", seed=2)
    b = OnePatchSees(t.model, t.tokenizer, t.processor, t.identity)
    imgs = _images(2, seed=3)
    maps, gaps = patch_attribution(b, imgs, _text(b, 2), steps=64)
    others = np.ones((4, 4), bool)
    others[1, 2] = False
    assert (maps[:, others] == 0).all()
    assert np.abs(maps[:, 1, 2]).min() > 0
    np.testing.assert_allclose(maps[:, 1, 2], gaps, rtol=0.05, atol=5e-3 * np.abs(gaps).max())
    # and on the unmasked model, a patch set to the baseline colour (the processor's mean) gets 0 too
    img = _images(1, seed=4)
    mean = np.round(np.array(t.processor.image_mean) * 255)
    img[0, 0:8, 0:8] = mean
    m, _ = patch_attribution(t, img, _text(t, 1), steps=8)
    assert abs(m[0, 0, 0]) < 0.02 * np.abs(m).max()   # uint8 rounding leaves a sliver


def test_worst_failures_are_right_clean_wrong_attacked_by_margin() -> None:
    from safeglass.clip.zeroshot import predict

    b = tiny_random("clip", seed=1)        # a seed whose predictions move with blocky colour images
    rng = np.random.default_rng(0)
    blocks = np.repeat(np.repeat(rng.integers(0, 256, (80, 4, 4, 3), dtype=np.uint8), 8, 1), 8, 2)
    clean, attacked = blocks[:40], blocks[40:]
    cache = TextCache()
    labels = predict(b, clean, CLASSES, ["a {}"], cache)      # every clean image right by construction
    pa = predict(b, attacked, CLASSES, ["a {}"], cache)
    got = worst_failures(b, clean, attacked, labels, CLASSES, ["w"] * 40, ["a {}"], k=5, cache=cache)
    wrong = int((pa != labels).sum())
    assert wrong > 0 and len(got) == min(5, wrong)
    assert all(f.attacked_pred != f.label and f.clean_pred == f.label for f in got)
    assert [f.margin for f in got] == sorted((f.margin for f in got), reverse=True) and got[-1].margin > 0
    assert {f.index for f in got} <= set(np.flatnonzero(pa != labels).tolist())


def test_grid_and_overlay_draw_pngs(tmp_path) -> None:
    img = np.full((64, 64, 3), 200, np.uint8)
    attr = np.zeros((4, 4))
    attr[0, 3] = 2.0
    attr[2, 2] = -5.0                                          # negative evidence is not drawn
    ov = pictures.overlay(img, attr)
    assert ov[5, 60, 0] > ov[5, 60, 1] + 80                     # the top-right patch is red
    assert (ov[40, 40] == ov[60, 5]).all()                      # the negative patch stays grey
    path = pictures.grid([[(img, "clean: star"), (ov, "attacked with a long caption that wraps\ncalled circle")]] * 3,
                         tmp_path / "g.png", "t")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (2 * (pictures.CELL + 8) + 8,
                                                  24 + 3 * (pictures.CELL + pictures.CAPTION + 8) + 8)
