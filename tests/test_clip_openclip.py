"""The optional open_clip backend. open_clip_torch does not install here (it imports torchvision), so these tests
put a stand-in `open_clip` module in its place: the same three calls open_clip users make
(`create_model_and_transforms`, `get_tokenizer`, `model.encode_image / encode_text / logit_scale`) over a tiny random
CLIP, and check the backend against that model's own embeddings. The missing package itself must be a clear error."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from safeglass.clip import backends
from safeglass.clip.openclip import OpenClipBackend
from safeglass.clip.zeroshot import TextCache, predict

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


class _Visual(torch.nn.Module):
    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.image_size = (image_size, image_size)
        self.preprocess_cfg = {"size": image_size, "mean": MEAN, "std": STD}


class _Model(torch.nn.Module):
    """open_clip's model surface over a transformers CLIPModel."""

    def __init__(self, hf) -> None:
        super().__init__()
        self.hf = hf
        self.visual = _Visual(hf.config.vision_config.image_size)
        self.logit_scale = hf.logit_scale

    def encode_image(self, pixels):
        return backends._features(self.hf.get_image_features(pixel_values=pixels))

    def encode_text(self, tokens):
        return backends._features(self.hf.get_text_features(input_ids=tokens))


@pytest.fixture
def fake_open_clip(monkeypatch):
    tiny = backends.tiny_random("clip", seed=3)
    calls = []

    def preprocess(im):  # what open_clip's transform does to an image already at the model's side
        x = torch.from_numpy(np.asarray(im, np.float32) / 255.0).permute(2, 0, 1)
        return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)

    def create_model_and_transforms(name, pretrained=None):
        calls.append((name, pretrained))
        return _Model(tiny.model), None, preprocess

    def get_tokenizer(name):
        return lambda texts: tiny.tokenizer(texts, padding="max_length", max_length=8,
                                            return_tensors="pt")["input_ids"]

    mod = types.SimpleNamespace(create_model_and_transforms=create_model_and_transforms, get_tokenizer=get_tokenizer,
                                __version__="stand-in")
    monkeypatch.setitem(sys.modules, "open_clip", mod)
    return tiny, calls


def test_a_missing_open_clip_is_a_clear_error_naming_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)  # what a machine without the package (or torchvision) sees
    with pytest.raises(ImportError, match=r"safeglass\[openclip\]"):
        backends.load_hub("chs20/tecoa4-clip")
    with pytest.raises(ImportError, match="torchvision"):
        backends.load_backend({"open_clip": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"})


def test_the_robust_checkpoints_load_through_open_clip_from_the_hub(fake_open_clip) -> None:
    _, calls = fake_open_clip
    b = backends.load_hub("chs20/fare2-clip")
    assert isinstance(b, OpenClipBackend) and isinstance(b, backends.CLIPBackend)
    assert calls == [("hf-hub:chs20/fare2-clip", None)]
    assert b.identity == {"source": "open_clip", "name": "hf-hub:chs20/fare2-clip", "pretrained": None,
                          "open_clip": "stand-in"}
    with pytest.raises(ValueError, match="takes no revision"):
        backends.load_hub("chs20/fare2-clip", revision="abc")


def test_embeddings_equal_the_wrapped_model_and_both_image_paths_agree(fake_open_clip) -> None:
    tiny, _ = fake_open_clip
    b = backends.load_backend({"open_clip": "ViT-tiny", "pretrained": "stand-in"})
    assert b.image_size == 32 and b.mean == MEAN and b.std == STD
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    got = b.encode_images(images)
    # the batch path (our normalisation) and the per-image path (open_clip's preprocess) give the same input
    assert torch.allclose(b.pixels(images), b.pixels(list(images)), atol=1e-6)
    with torch.no_grad():
        want = tiny.model.get_image_features(pixel_values=b.pixels(list(images)))
    want = backends._features(want)
    assert torch.allclose(got, want / want.norm(dim=-1, keepdim=True), atol=1e-5)
    assert torch.allclose(got.norm(dim=-1), torch.ones(5), atol=1e-5)
    t = b.encode_text(["a photo of a circle", "a star"])
    assert t.shape == (2, got.shape[1]) and not torch.allclose(t[0], t[1])
    assert b.logit_scale() == pytest.approx(float(tiny.model.logit_scale.detach().exp()))
    # the zero-shot path runs on it: one prediction per image, among the classes
    pred = predict(b, images, ("circle", "star", "heart"), ("a photo of a {}",), TextCache())
    assert len(pred) == 5 and set(np.asarray(pred).tolist()) <= {0, 1, 2}
    with pytest.raises(ValueError, match="no images"):
        b.encode_images(images[:0])
