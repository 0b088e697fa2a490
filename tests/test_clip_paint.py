"""PAINT: the patch fine-tunes only the image tower, the interpolation is (1 - a) theta0 + a theta1, a is picked
on the half of the fitting split that did not train, the whole curve is scored on held-out images, and the
backend gets its own weights back whatever happens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clip_fixtures import shapeclip_backend

from safeglass.clip import images, paint, typography
from safeglass.clip.backends import tiny_random
from safeglass.clip.dyslexify import correct
from safeglass.clip.zeroshot import TextCache


def test_interpolation_ends_at_both_models_and_is_linear_between() -> None:
    t0 = {"w": torch.tensor([0.0, 2.0]), "b": torch.tensor([1.0])}
    t1 = {"w": torch.tensor([4.0, 2.0]), "b": torch.tensor([-1.0])}
    assert all(torch.equal(paint.interpolate(t0, t1, 0.0)[k], t0[k]) for k in t0)
    assert all(torch.equal(paint.interpolate(t0, t1, 1.0)[k], t1[k]) for k in t0)
    mid = paint.interpolate(t0, t1, 0.25)
    assert mid["w"].tolist() == [1.0, 2.0] and mid["b"].tolist() == [0.5]


def test_the_pick_is_the_best_typographic_accuracy_within_the_clean_budget() -> None:
    curve = [{"alpha": 0.0, "clean": 0.95, "typographic": 0.50}, {"alpha": 0.5, "clean": 0.945, "typographic": 0.7},
             {"alpha": 0.75, "clean": 0.945, "typographic": 0.7}, {"alpha": 1.0, "clean": 0.90, "typographic": 0.9}]
    assert paint.pick(curve, 0.01)["alpha"] == 0.5          # 1.0 costs 5 points; of the ties, the smaller a
    assert paint.pick(curve, 0.05)["alpha"] == 1.0
    assert paint.pick(curve, 0.0)["alpha"] == 0.0           # a = 0 always qualifies


def test_the_halves_are_disjoint_seeded_and_cover_the_split() -> None:
    tr, sel = paint.halves(10, 0.3, 0)
    assert len(sel) == 3 and len(tr) == 7 and not set(tr) & set(sel) and set(tr) | set(sel) == set(range(10))
    assert [x.tolist() for x in paint.halves(10, 0.3, 0)] == [tr.tolist(), sel.tolist()]
    assert paint.halves(10, 0.3, 1)[1].tolist() != sel.tolist()


def test_the_weights_come_back_even_when_the_patch_fails() -> None:
    b = tiny_random("clip", 0)
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"), paint.restored(b):
        with torch.no_grad():
            for p in paint.tower(b).values():
                p.add_(1.0)
        raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in b.model.state_dict().items())
    # the tower is the image side only: no text-tower parameter is patched
    assert paint.tower(b) and all(k.startswith(("vision_model.", "visual_projection.")) for k in paint.tower(b))


@pytest.fixture(scope="module")
def shapeclip():
    return shapeclip_backend()


def test_paint_patches_shapeclip_and_restores_it(shapeclip) -> None:
    sets = []
    for split, n in (("fit", 160), ("test", 200)):
        d = images.shapeworld(n, seed=0, image_size=64, split=split)
        sets.append((d, typography.attack_set(d.images, d.labels, d.classes, typography.TypoSpec(), 0, d.scenes)))
    (fit, fit_att), (test, test_att) = sets
    templates = ["a photo of a {}"]
    before = {k: v.clone() for k, v in shapeclip.model.state_dict().items()}
    base = correct(shapeclip, test.images, test_att.images, test.labels, test.classes, templates, TextCache())
    settings = paint.PaintSettings(epochs=2, lr=2e-4, batch_size=40, alphas=(0.0, 0.5, 1.0), seed=0)
    got, rec = paint.defend(shapeclip, fit, fit_att, test, test_att, templates, settings, max_clean_drop=0.02)
    after = shapeclip.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)          # theta0 is back
    curve = {c["alpha"]: c for c in rec["curve"]}
    # a = 0 is the unpatched model, image for image
    assert curve[0.0]["test_clean"] == pytest.approx(base[0].mean()) and \
        curve[0.0]["test_typographic"] == pytest.approx(base[1].mean())
    # the patch learns to read past the word: the fully patched model is better on unseen attacked images
    assert curve[1.0]["test_typographic"] > curve[0.0]["test_typographic"] + 0.1
    assert rec["finetune"]["epoch_loss"][-1] < rec["finetune"]["epoch_loss"][0]
    assert rec["fit"] == {"train_images": 80, "select_images": 80, "select_share": 0.5}
    assert rec["finetune"]["images"] == 160                                # clean and attacked copies
    chosen = curve[rec["alpha"]]
    assert curve[0.0]["clean"] - chosen["clean"] <= 0.02 + 1e-9
    assert np.isclose(got[1].mean(), chosen["test_typographic"]) and np.isclose(got[0].mean(), chosen["test_clean"])
