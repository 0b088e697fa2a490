"""HFVisionLM on tiny random models of every family: batched multi-image generation, white-box
surface, differentiable preprocessing against the real processors, save/load round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from safeglass.targets.families import FAMILIES, family_for_model_type, get_family
from safeglass.targets.tiny import tiny_target
from safeglass.types import GenerationParams, ImageRef, Target, Turn

VLM_FAMILIES = ["qwen2-vl", "qwen2.5-vl", "qwen3-vl", "internvl", "llava"]


def _image(h: int, w: int, seed: int) -> ImageRef:
    rng = np.random.default_rng(seed)
    return ImageRef(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))


IMAGES = [_image(60, 90, 0), _image(40, 40, 1), _image(100, 50, 2)]
MIXED = [
    (Turn("user", "hello there"),),                                       # text only
    (Turn("system", "be careful"), Turn("user", "what is this?", (IMAGES[0],))),
    (Turn("user", "compare these two", (IMAGES[1], IMAGES[2])),),
]


@pytest.fixture(scope="module", params=VLM_FAMILIES)
def vlm(request):
    return tiny_target(request.param, seed=0, batch_size=3)


def test_family_table():
    assert set(FAMILIES) == set(VLM_FAMILIES)
    assert family_for_model_type("qwen2_5_vl").name == "qwen2.5-vl"
    with pytest.raises(KeyError, match="known"):
        get_family("nope")


def test_mixed_batch_one_and_two_images_matches_one_by_one(vlm):
    assert isinstance(vlm, Target)
    params = GenerationParams(max_new_tokens=6)
    batched = vlm.generate(MIXED, params)
    assert len(batched) == 3
    # image tokens count as prompt tokens: two images > one image > none
    assert batched[0].prompt_tokens < batched[1].prompt_tokens
    assert batched[0].prompt_tokens < batched[2].prompt_tokens
    vlm.batch_size = 1
    try:
        single = vlm.generate(MIXED, params)
    finally:
        vlm.batch_size = 3
    # left padding (and each family's position ids) must not change greedy outputs
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in single]


def test_differentiable_preprocessing_matches_processor(vlm):
    pil = [IMAGES[0].pil(), IMAGES[2].pil()]
    x = vlm.prepare_images(pil)
    assert x.shape[0] == 2 and x.shape[1] == 3 and 0 <= x.min() and x.max() <= 1
    x.requires_grad_(True)
    mine = vlm.preprocess_differentiable(x)
    stand_ins = [Image.fromarray((t * 255).round().byte().permute(1, 2, 0).numpy()) for t in x.detach()]
    ref = vlm.processor.image_processor(images=stand_ins, return_tensors="pt")
    assert mine["pixel_values"].shape == ref["pixel_values"].shape
    assert (mine["pixel_values"] - ref["pixel_values"]).abs().max().item() < 1e-5
    if "image_grid_thw" in ref:
        assert torch.equal(mine["image_grid_thw"], ref["image_grid_thw"])
    # from the original picture too: prepare_images resizes (and crops) as the processor does
    first = vlm.preprocess_differentiable(vlm.prepare_images(pil[:1]))["pixel_values"]
    no_tiling = {"crop_to_patches": False} if vlm.family.name == "internvl" else {}
    direct = vlm.processor.image_processor(images=pil[:1], return_tensors="pt", **no_tiling)["pixel_values"]
    assert first.shape == direct.shape and (first - direct).abs().max().item() < 1e-5
    mine["pixel_values"].square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_loglikelihood_gradients_reach_pixels(vlm):
    x = vlm.prepare_images([IMAGES[0]])
    # the conversation holds the already-resized image, so the processor path sees the same pixels
    # (InternVL would otherwise tile a 60x90 picture, which the one-tile tensor path does not)
    kept = Image.fromarray((x[0] * 255).round().byte().permute(1, 2, 0).numpy())
    conv = (Turn("user", "describe", (ImageRef(kept),)),)
    via_processor = vlm.loglikelihood(conv, "a cat")
    x.requires_grad_(True)
    via_tensor = vlm.loglikelihood(conv, "a cat", pixel_values=x)
    assert torch.allclose(via_tensor.detach(), via_processor.detach(), atol=1e-3)
    via_tensor.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # one signed-gradient step on the pixels raises the target's log-likelihood
    step = (x.detach() + 2 / 255 * x.grad.sign()).clamp(0, 1)
    assert vlm.loglikelihood(conv, "a cat", pixel_values=step).item() > via_tensor.item()
    text_only = vlm.loglikelihood((Turn("user", "hi"),), "there")
    assert text_only.ndim == 0 and text_only.item() < 0


def test_neuron_sites_all_components_and_hook_width(vlm):
    lm = vlm.neuron_sites()
    width = vlm.model.config.text_config.intermediate_size
    assert len(lm) == 2 and all(s.width == width for s in lm)
    assert all(s.module_path == f"model.language_model.layers.{s.layer}.mlp.down_proj" for s in lm)
    every = vlm.neuron_sites(("language_model", "vision_tower", "projector"))
    assert {s.component for s in every} == {"language_model", "vision_tower", "projector"}
    assert sum(s.component == "vision_tower" for s in every) == 2
    seen: dict[str, set[int]] = {}
    handles = [vlm.module(s.module_path).register_forward_pre_hook(
        lambda m, a, name=s.name: seen.setdefault(name, set()).add(a[0].shape[-1])) for s in every]
    try:
        vlm.generate(MIXED[1:2], GenerationParams(max_new_tokens=2))
    finally:
        for h in handles:
            h.remove()
    assert {name: widths for name, widths in seen.items()} == {s.name: {s.width} for s in every}


def test_config_stable_and_json(vlm):
    again = tiny_target(vlm.family.name, seed=0, batch_size=1)
    assert vlm.config() == again.config()
    assert "batch" not in json.dumps(vlm.config())
    assert tiny_target(vlm.family.name, seed=1).config() != vlm.config()


def test_save_and_load_from_dir(vlm, tmp_path):
    from safeglass.targets.hf_vlm import HFVisionLM

    vlm.model.save_pretrained(tmp_path)
    vlm.processor.save_pretrained(tmp_path)
    loaded = HFVisionLM(str(tmp_path), batch_size=3, dtype="float32")
    assert loaded.family.name == vlm.family.name
    params = GenerationParams(max_new_tokens=4)
    assert [g.text for g in loaded.generate(MIXED, params)] == [g.text for g in vlm.generate(MIXED, params)]
    assert loaded.config()["weights"]
