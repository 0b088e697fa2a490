"""CLIP-style backends: one small protocol over `transformers` CLIPModel and SiglipModel.

A backend encodes texts and images to unit-norm embeddings and names its weights (`identity`, which enters every
cache key and result). ShapeCLIP is a CLIPModel and goes through the same class; tiny random CLIP / SigLIP models
are built from configs (with ShapeCLIP's offline word-level tokenizer) for tests. Hub checkpoints load only for
online users, safetensors only and with remote code off.

    backend = load_backend({"organism": "shapeclip"})
    text = backend.encode_text(["a photo of a circle", "a photo of a star"])      # [2, D], unit norm
    image = backend.encode_images(uint8_images)                                  # [N, D], unit norm
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from safeglass.hashing import content_hash

FAMILIES = ("clip", "siglip")


@runtime_checkable
class CLIPBackend(Protocol):
    """What the tasks need of a CLIP-style model."""

    identity: dict[str, Any]  # names the weights: source, name and a content key
    family: str               # clip | siglip
    image_size: int

    def encode_text(self, texts: Sequence[str]) -> Any: ...

    def encode_images(self, images: Any) -> Any: ...

    def logit_scale(self) -> float: ...


def family_of(model: Any) -> str:
    kind = getattr(model.config, "model_type", "")
    if kind == "clip":
        return "clip"
    if kind == "siglip":
        return "siglip"
    raise ValueError(f"clip backend: unsupported model type {kind!r}; supported: CLIPModel, SiglipModel")


def _features(out: Any) -> Any:
    # transformers 5 may return a ModelOutput from get_*_features; older versions return the tensor
    return out if hasattr(out, "norm") else out.pooler_output


class HFBackend:
    """A transformers CLIPModel or SiglipModel with its tokenizer and image processor, in eval mode."""

    def __init__(self, model: Any, tokenizer: Any, processor: Any, identity: Mapping[str, Any],
                 batch_size: int = 256) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.processor = processor
        self.family = family_of(model)
        self.identity = dict(identity)
        self.batch_size = int(batch_size)
        vc = model.config.vision_config
        self.image_size = int(vc.image_size)
        self.patch_size = int(vc.patch_size)
        self.num_heads = int(vc.num_attention_heads)
        # CLIP pools its class token; SigLIP has none (an attention-pooling head reads every patch)
        self.has_class_token = self.family == "clip"

    @property
    def vision_model(self) -> Any:
        return self.model.vision_model

    def encode_text(self, texts: Sequence[str]) -> Any:
        import torch

        if self.family == "siglip":  # SigLIP was trained on max-length padding and pools the last position
            tok = self.tokenizer(list(texts), padding="max_length", truncation=True, return_tensors="pt",
                                 max_length=int(self.model.config.text_config.max_position_embeddings))
        else:
            tok = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        args = {"input_ids": tok["input_ids"]}
        if self.family == "clip" and "attention_mask" in tok:
            args["attention_mask"] = tok["attention_mask"]
        with torch.inference_mode():
            f = _features(self.model.get_text_features(**args)).float()
        return f / f.norm(dim=-1, keepdim=True)

    def pixels(self, images: Any) -> Any:
        """Model input for a batch: uint8 [N, S, S, 3] at the model's side is normalised directly (what the
        processor does to it, without its per-image PIL round trip); anything else goes through the processor."""
        import torch

        if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4 \
                and images.shape[1:] == (self.image_size, self.image_size, 3):
            p = self.processor
            mean = torch.tensor(p.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(p.image_std, dtype=torch.float32).view(1, 3, 1, 1)
            x = torch.from_numpy(images).permute(0, 3, 1, 2).float() * float(p.rescale_factor)
            return (x - mean) / std
        return self.processor(images=list(images), return_tensors="pt")["pixel_values"]

    def encode_pixels(self, pixels: Any) -> Any:
        f = _features(self.model.get_image_features(pixel_values=pixels)).float()
        return f / f.norm(dim=-1, keepdim=True)

    def encode_images(self, images: Any) -> Any:
        import torch

        if len(images) == 0:
            raise ValueError("clip backend: no images to encode")
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                out.append(self.encode_pixels(self.pixels(images[i:i + self.batch_size])))
        return torch.cat(out)

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())


# ------------------------------------------------------------------------------------------ loaders


def load_shapeclip(path: str | None = None) -> HFBackend:
    """ShapeCLIP (the packaged build, or a rebuilt one at `path`), named by its weights' hash."""
    from safeglass.organisms import registry

    model, tokenizer, processor = registry.load("shapeclip", path)
    return HFBackend(model, tokenizer, processor,
                     {"source": "organism", "name": "shapeclip", "weights": registry.weights_key("shapeclip", path)})


# ShapeCLIP and its robust fine-tunes (organisms.shapeclip_robust: the base text tower, a TeCoA / FARE vision tower)
CLIP_ORGANISMS = ("shapeclip", *(f"shapeclip-{m}-eps{e}" for m in ("tecoa", "fare") for e in (2, 4)))


def load_clip_organism(name: str, path: str | None = None) -> HFBackend:
    """A CLIP organism by name, named by its weights' content key (for a robust one: its vision tower's and its
    base ShapeCLIP's)."""
    from safeglass.organisms import registry

    if name not in CLIP_ORGANISMS:
        raise ValueError(f"clip model: organism {name!r} is not a CLIP; known: {', '.join(CLIP_ORGANISMS)}")
    if name == "shapeclip":
        return load_shapeclip(path)
    model, tokenizer, processor = registry.load(name, path)
    return HFBackend(model, tokenizer, processor,
                     {"source": "organism", "name": name, "weights": registry.weights_key(name, path)})


TINY: dict[str, Any] = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "heads": 4, "projection_dim": 16}


def tiny_random(family: str = "clip", seed: int = 0, **overrides: Any) -> HFBackend:
    """A randomly initialised CLIP or SigLIP of a few thousand parameters (seeded), with ShapeCLIP's word-level
    tokenizer: the tests' model, built offline in well under a second."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        SiglipConfig,
        SiglipImageProcessorPil,
        SiglipModel,
    )

    from safeglass.organisms.shapeclip import CLIP_MEAN, CLIP_STD, build_tokenizer

    if family not in FAMILIES:
        raise ValueError(f"tiny_random: unknown family {family!r}; known: {', '.join(FAMILIES)}")
    size = {**TINY, **overrides}
    tokenizer = build_tokenizer(16)
    text = dict(vocab_size=len(tokenizer), hidden_size=size["width"], intermediate_size=2 * size["width"],
                num_hidden_layers=size["layers"], num_attention_heads=size["heads"], max_position_embeddings=16,
                pad_token_id=0, bos_token_id=2, eos_token_id=3)
    vision = dict(hidden_size=size["width"], intermediate_size=2 * size["width"], num_hidden_layers=size["layers"],
                  num_attention_heads=size["heads"], image_size=size["image_size"], patch_size=size["patch_size"])
    torch.manual_seed(seed)
    if family == "clip":
        model = CLIPModel(CLIPConfig(text_config={**text, "projection_dim": size["projection_dim"]},
                                     vision_config={**vision, "projection_dim": size["projection_dim"]},
                                     projection_dim=size["projection_dim"]))
        processor = CLIPImageProcessorPil(size={"shortest_edge": size["image_size"]},
                                          crop_size={"height": size["image_size"], "width": size["image_size"]},
                                          image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    else:
        model = SiglipModel(SiglipConfig(text_config={**text, "projection_size": size["width"]},
                                         vision_config=vision))
        processor = SiglipImageProcessorPil(size={"height": size["image_size"], "width": size["image_size"]})
    ident = {"source": "random", "family": family, "seed": seed, "config": content_hash(size, length=12)}
    return HFBackend(model, tokenizer, processor, ident)


def load_hub(name: str, revision: str | None = None) -> Any:
    """A hub checkpoint for an online user: safetensors only, remote code off. Offline, transformers says so.
    A known open_clip checkpoint (the TeCoA / FARE robust CLIPs) goes to the optional open_clip backend."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    from safeglass.clip.checkpoints import CHECKPOINTS

    known = CHECKPOINTS.get(name)
    if known is not None and known.fmt == "open_clip":
        if revision is not None:
            raise ValueError(f"clip backend: {name} is an open_clip checkpoint, read at its hub head; open_clip "
                             "takes no revision")
        from safeglass.clip.openclip import load_open_clip

        return load_open_clip(f"hf-hub:{name}")
    kw = {"revision": revision, "trust_remote_code": False}
    model = AutoModel.from_pretrained(name, use_safetensors=True, **kw)
    ident = {"source": "hub", "name": name, "revision": revision or getattr(model.config, "_commit_hash", None)}
    return HFBackend(model, AutoTokenizer.from_pretrained(name, **kw), AutoImageProcessor.from_pretrained(name, **kw),
                     ident)


MODEL_KEYS = ("organism", "random", "hub", "open_clip")


def load_backend(spec: Mapping[str, Any]) -> Any:
    """A backend from a config's `model` block: {organism: shapeclip[, path]}, {random: clip|siglip[, seed]},
    {hub: NAME[, revision]} or {open_clip: NAME[, pretrained: TAG]} (the optional open_clip backend)."""
    given = [k for k in MODEL_KEYS if spec.get(k) is not None]
    if len(given) != 1:
        raise ValueError(f"clip model: give exactly one of {', '.join(MODEL_KEYS)}, got {sorted(spec)}")
    if spec.get("organism") is not None:
        return load_clip_organism(spec["organism"], spec.get("path"))
    if spec.get("random") is not None:
        return tiny_random(spec["random"], int(spec.get("seed") or 0))
    if spec.get("open_clip") is not None:
        from safeglass.clip.openclip import load_open_clip

        return load_open_clip(spec["open_clip"], spec.get("pretrained"))
    return load_hub(spec["hub"], spec.get("revision"))
