"""CLIP backends: one protocol over CLIPModel and SiglipModel, tiny random models built offline, ShapeCLIP through
it, and the hub registry (names only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clip_fixtures import shapeclip_backend

from safeglass.clip import backends
from safeglass.clip.checkpoints import CHECKPOINTS


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_tiny_random_models_follow_the_protocol(family) -> None:
    b = backends.tiny_random(family, seed=0)
    assert isinstance(b, backends.CLIPBackend) and b.family == family
    assert b.has_class_token == (family == "clip")
    t = b.encode_text(["a photo of a circle", "a star", "a photo of a heart"])
    imgs = np.random.default_rng(0).integers(0, 256, (5, b.image_size, b.image_size, 3), dtype=np.uint8)
    i = b.encode_images(imgs)
    assert t.shape[0] == 3 and i.shape[0] == 5 and t.shape[1] == i.shape[1]
    assert torch.allclose(t.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(i.norm(dim=-1), torch.ones(5), atol=1e-5)
    # the same seed builds the same weights; another seed other ones
    assert torch.allclose(backends.tiny_random(family, seed=0).encode_images(imgs), i)
    assert not torch.allclose(backends.tiny_random(family, seed=1).encode_images(imgs), i)
    assert backends.tiny_random(family, seed=1).identity != b.identity


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_the_direct_pixel_path_equals_the_processor(family) -> None:
    b = backends.tiny_random(family)
    imgs = np.random.default_rng(1).integers(0, 256, (4, b.image_size, b.image_size, 3), dtype=np.uint8)
    fast = b.pixels(imgs)
    slow = b.processor(images=list(imgs), return_tensors="pt")["pixel_values"]
    assert fast.shape == slow.shape
    assert torch.allclose(fast, slow, atol=1e-5)
    # another size goes through the processor, which resizes
    big = np.random.default_rng(2).integers(0, 256, (2, 2 * b.image_size, 2 * b.image_size, 3), dtype=np.uint8)
    assert b.pixels(big).shape == (2, 3, b.image_size, b.image_size)


def test_batching_does_not_change_embeddings() -> None:
    b = backends.tiny_random("clip")
    imgs = np.random.default_rng(3).integers(0, 256, (7, b.image_size, b.image_size, 3), dtype=np.uint8)
    whole = b.encode_images(imgs)
    b.batch_size = 3
    assert torch.allclose(b.encode_images(imgs), whole, atol=1e-6)


def test_shapeclip_goes_through_the_backend_named_by_its_weights() -> None:
    b = shapeclip_backend()
    assert b.family == "clip" and b.image_size == 64 and b.patch_size == 16
    assert b.identity["source"] == "organism" and b.identity["weights"].startswith("sha:")
    assert b.logit_scale() > 1


def test_load_backend_reads_a_config_block() -> None:
    assert backends.load_backend({"random": "siglip", "seed": 2}).identity["seed"] == 2
    with pytest.raises(ValueError, match="exactly one of"):
        backends.load_backend({"random": "clip", "hub": "openai/clip-vit-base-patch32"})
    with pytest.raises(ValueError, match="not a CLIP"):
        backends.load_backend({"organism": "safesmol"})


def test_the_hub_registry_names_checkpoints_and_sends_open_clip_ones_to_its_backend() -> None:
    for name in ("openai/clip-vit-base-patch32", "google/siglip2-base-patch16-224", "chs20/tecoa4-clip",
                 "chs20/fare2-clip"):
        assert name in CHECKPOINTS
    assert {c.family for c in CHECKPOINTS.values()} == {"clip", "siglip"}
    with pytest.raises(ImportError, match="open_clip"):  # not installed here: tests/test_clip_openclip.py
        backends.load_hub("chs20/tecoa4-clip")
