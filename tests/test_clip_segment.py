"""MaskCLIP segmentation: the dense value path, label maps, mIoU, VOC folders, ShapeCLIP above a trivial baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from safeglass.clip import segdata
from safeglass.clip import segment as S
from safeglass.clip.backends import tiny_random
from safeglass.clip.zeroshot import TextCache


def _images(n: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_dense_features_shapes_and_norm(family):
    b = tiny_random(family)
    f = S.dense_features(b, _images(3, 32), batch_size=2)   # two batches
    g = 32 // 8
    assert f.shape[:3] == (3, g, g)
    assert torch.allclose(f.norm(dim=-1), torch.ones(3, g, g), atol=1e-5)
    text = TextCache().class_embeddings(b, ["circle", "star"], ["a {}"])
    assert f.shape[-1] == text.shape[-1]                     # patches live in the text embedding space
    scores = S.class_scores(b, f, ["circle", "star"], ["a {}"], TextCache(), 32)
    assert scores.shape == (3, 2, 32, 32)


def test_value_path_equals_hand_computation():
    b = tiny_random("clip", seed=3)
    imgs = _images(2, 32, 1)
    vm = b.vision_model
    layer = list(vm.encoder.layers)[-1]
    with torch.no_grad():
        out = vm(pixel_values=b.pixels(imgs), output_hidden_states=True)
        x = out.hidden_states[-2]                             # what enters the last block
        a = layer.self_attn
        h = F.layer_norm(x, (x.shape[-1],), layer.layer_norm1.weight, layer.layer_norm1.bias,
                         layer.layer_norm1.eps)
        v = h @ a.v_proj.weight.T + a.v_proj.bias
        y = x + v @ a.out_proj.weight.T + a.out_proj.bias    # no query-key attention: each token its own value
        h2 = F.layer_norm(y, (y.shape[-1],), layer.layer_norm2.weight, layer.layer_norm2.bias, layer.layer_norm2.eps)
        m = layer.mlp
        y = y + m.fc2(m.activation_fn(m.fc1(h2)))
        y = F.layer_norm(y, (y.shape[-1],), vm.post_layernorm.weight, vm.post_layernorm.bias, vm.post_layernorm.eps)
        y = y[:, 1:] @ b.model.visual_projection.weight.T
        want = (y / y.norm(dim=-1, keepdim=True)).reshape(2, 4, 4, -1)
        # the real block (with attention) gives something else: the path is really replaced
        real = b.model.visual_projection(vm.post_layernorm(out.last_hidden_state[:, 1:]))
        real = (real / real.norm(dim=-1, keepdim=True)).reshape(2, 4, 4, -1)
    got = S.dense_features(b, imgs)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, real, atol=1e-3)
    no_ffn = S.dense_features(b, imgs, ffn=False)
    assert not torch.allclose(no_ffn, got, atol=1e-3)


def test_label_maps_prompt_and_threshold():
    scores = torch.tensor([[[[0.1, 0.5]], [[0.3, 0.2]], [[0.2, 0.4]]]])   # [1, 3, 1, 2]
    # a prompt is channel 0, the background
    assert S.label_maps(scores, S.Background(prompt="background")).tolist() == [[[1, 0]]]
    # threshold over classes 1..3 (all three channels are classes here)
    assert S.label_maps(scores, S.Background(threshold=0.35)).tolist() == [[[0, 1]]]
    assert S.label_maps(scores, S.Background(threshold=0.25)).tolist() == [[[2, 1]]]
    with pytest.raises(ValueError):
        S.Background()


def test_miou_equals_hand_computation_with_ignore_and_absent_classes():
    truth = np.array([[[0, 0, 1], [1, 255, 2]],
                      [[0, 1, 1], [0, 0, 255]]], np.uint8)
    pred = np.array([[[0, 1, 1], [1, 2, 3]],      # (1,1) is ignored whatever is predicted there
                     [[0, 1, 0], [3, 0, 3]]], np.uint8)
    # label 0: gt at (0,0,0),(0,0,1),(1,0,0),(1,1,0),(1,1,1) = 5; pred 0 on valid: (0,0,0),(1,0,0),(1,0,2),(1,1,1)=4
    #   inter: (0,0,0),(1,0,0),(1,1,1) = 3; union 5 + 4 - 3 = 6
    # label 1: gt (0,0,2),(0,1,0),(1,0,1),(1,0,2) = 4; pred 1 valid: (0,0,1),(0,0,2),(0,1,0),(1,0,1) = 4; inter 3;
    #   union 5
    # label 2: gt (0,1,2) = 1; pred 2 on valid: none; inter 0; union 1
    # label 3: absent from the truth (predicted twice): not in the mean
    c = S.counts(pred, truth, 4)
    assert c.inter.sum(0).tolist() == [3, 3, 0, 0]
    assert c.union.sum(0).tolist() == [6, 5, 1, 2]
    want = (3 / 6 + 3 / 5 + 0 / 1) / 3
    r = S.score(pred, truth, ["background", "a", "b", "c"], resamples=200)
    assert r["miou"] == pytest.approx(round(want, 4))
    assert set(r["per_class_iou"]) == {"background", "a", "b"}
    assert r["pixel_accuracy"] == pytest.approx(round(6 / 10, 4))   # 10 valid pixels, 6 right
    assert r["ci_low"] <= r["miou"] <= r["ci_high"]
    with pytest.raises(ValueError, match="outside"):
        S.counts(pred, np.full_like(truth, 7), 4)
    d = S.paired_drop(truth.copy(), pred, truth, 4, resamples=100)
    assert d["points"] == pytest.approx(round(100 * (1 - want), 2))


def test_fit_threshold_finds_the_separating_value():
    # one class: its score is 0.8 on the object and 0.2 elsewhere, so any threshold in (0.2, 0.8] is perfect
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[:, 1:3, 1:3] = 1
    scores = torch.where(torch.from_numpy(truth == 1), 0.8, 0.2).float()[:, None]
    t, m = S.fit_threshold(scores, truth, 2)
    assert 0.2 < t <= 0.8 and m == pytest.approx(1.0)


def test_localisation_gap_by_hand():
    truth = np.array([[[0, 1], [0, 255]]], np.uint8)
    scores = torch.tensor([[[[0.1, 0.7], [0.3, 9.0]], [[0.0, 0.0], [0.0, 0.0]]]])    # [1, 2 classes, 2, 2]
    got = S.localisation(scores, truth)
    assert got["mean_gap"] == pytest.approx(0.7 - 0.2, abs=1e-4) and got["positive_share"] == 1.0
    with_prompt = torch.cat([torch.zeros(1, 1, 2, 2), scores], 1)
    assert S.localisation(with_prompt, truth, prompt=True) == got


def test_voc_folder_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64]
    # smooth pictures (JPEG keeps them within a few levels), one per colour channel order
    images = np.stack([np.stack([xx * 4, yy * 5, (xx + yy) * 2][k:] + [xx * 4, yy * 5, (xx + yy) * 2][:k], -1)
                       for k in range(3)]).astype(np.uint8)
    masks = rng.integers(0, 4, (3, 48, 64)).astype(np.uint8)
    masks[:, 0, :] = 255                                   # VOC's ignored outline
    ids = segdata.write_voc(tmp_path / "voc", images, masks)
    from PIL import Image

    with Image.open(tmp_path / "voc" / "SegmentationClass" / f"{ids[0]}.png") as m:
        assert m.mode == "P"                               # a palette PNG, as VOC ships
    got = segdata.voc(tmp_path / "voc", 48, classes=("a", "b", "c"))
    left = (64 - 48) // 2                                  # centre crop of the longer side
    assert np.array_equal(got.masks, masks[:, :, left:left + 48])
    assert np.abs(got.images.astype(int) - images[:, :, left:left + 48].astype(int)).mean() < 4   # JPEG
    assert got.classes == ("a", "b", "c") and got.label_names[0] == "background"
    # a listing picks the images; a label beyond the classes is refused
    (tmp_path / "voc" / "ImageSets" / "Segmentation" / "val.txt").write_text(f"{ids[1]}\n")
    assert segdata.voc(tmp_path / "voc", 48, classes=("a", "b", "c")).meta["n"] == 1
    with pytest.raises(ValueError, match="beyond"):
        segdata.voc(tmp_path / "voc", 48, classes=("a", "b"))


def test_shapeworld_masks_name_the_shapes():
    d = segdata.shapeworld(6, 0, 64)
    assert d.masks.shape == (6, 64, 64)
    for m, label, scene in zip(d.masks, d.labels, d.scenes):
        present = set(np.unique(m)) - {0}
        assert label + 1 in present                        # the main shape is seen
        assert present <= {d.classes.index(o.shape) + 1 for o in scene.objects}


def test_segment_command_on_a_tiny_clip(tmp_path):
    from safeglass.clip.config import parse_clip_config
    from safeglass.clip.segrun import evaluate_segmentation, table

    cfg = parse_clip_config({"model": {"random": "clip"}, "data": {"n": 12}, "segment": {"fit_n": 8,
                                                                                          "resamples": 50}})
    r = evaluate_segmentation(cfg, tmp_path)
    assert r["kind"] == "clip segment" and r["model"]["source"] == "random"
    assert r["method"]["fitted"]["fit_n"] == 8 and "threshold" in r["method"]["background"]
    assert 0 <= r["typographic"]["miou"] <= 1 and r["attack"]["changed_pixel_share"] > 0
    on_disk = json.loads((tmp_path / "clip-segment.json").read_text())
    assert on_disk["config"]["hash"] == cfg.hash and on_disk["versions"]
    assert "mIoU" in table(r)
    # a prompt background and a VOC folder
    segdata.write_voc(tmp_path / "voc", _images(4, 32), np.random.default_rng(1).integers(0, 3, (4, 32, 32)))
    cfg2 = parse_clip_config({"model": {"random": "clip"}, "data": {"n": 4}, "classes": ["circle", "star"],
                              "attack": {"position": "center"},
                              "segment": {"image_dir": str(tmp_path / "voc"), "background": "square",
                                          "resamples": 20}})
    r2 = evaluate_segmentation(cfg2, tmp_path / "b")
    assert r2["method"]["background"] == {"prompt": "square"} and r2["dataset"]["source"] == "voc"
    from safeglass.schema import ConfigError

    with pytest.raises(ConfigError, match="classes"):
        bad = {**cfg2.raw, "segment": {**cfg2.raw["segment"], "voc_classes": ["a", "b", "c"]}}
        evaluate_segmentation(parse_clip_config(bad), tmp_path / "c")


def test_shapeclip_beats_all_background():
    from clip_fixtures import shapeclip_backend

    from safeglass.clip.zeroshot import SHAPECLIP_TEMPLATES

    b = shapeclip_backend()
    fit, test = segdata.shapeworld(150, 0, 64, "fit"), segdata.shapeworld(300, 0, 64, "test")
    cache = TextCache()
    fs = S.class_scores(b, S.dense_features(b, fit.images), fit.classes, SHAPECLIP_TEMPLATES, cache, 64)
    t, _ = S.fit_threshold(fs, fit.masks, 9)
    pred = S.segment(b, test.images, test.classes, SHAPECLIP_TEMPLATES, cache, S.Background(threshold=t))
    got = S.score(pred, test.masks, test.label_names, 300)
    base = S.score(np.zeros_like(test.masks), test.masks, test.label_names, 10)
    assert got["ci_low"] > base["miou"], (got, base["miou"])


def test_amplify_segment_task_reduces_to_the_same_miou():
    from safeglass.clip.amplify import TASKS
    from safeglass.clip.config import parse_clip_config
    from safeglass.clip.run import attacked_split, load_split
    from safeglass.clip.segrun import miou_reduce

    truth = np.array([[[0, 0, 1], [1, 255, 2]], [[0, 1, 1], [0, 0, 255]]], np.uint8)
    pred = np.array([[[0, 1, 1], [1, 2, 3]], [[0, 1, 0], [3, 0, 3]]], np.uint8)
    c = S.counts(pred, truth, 4)
    per_image = np.concatenate([c.inter, c.union, c.gt], 1).astype(float)
    assert miou_reduce(per_image.sum(0, keepdims=True), 2)[0] == pytest.approx(S.miou_of(c))
    # the task on a tiny CLIP: per-image statistics of the right width, attacked pixels ignored
    cfg = parse_clip_config({"model": {"random": "clip"}, "data": {"n": 5}, "segment": {"fit_n": 4},
                             "amplify": {"models": [{"random": "clip", "seed": 1}], "tasks": ["segment"]}})
    b = tiny_random("clip")
    data = load_split(cfg, b.image_size, "test")
    clean, att = TASKS["segment"].score(b, data, attacked_split(cfg, data), ["a {}"], TextCache(), cfg=cfg)
    assert clean.shape == att.shape == (5, 3 * (len(data.classes) + 1))
    assert (att[:, -(len(data.classes) + 1):].sum() == clean[:, -(len(data.classes) + 1):].sum())
