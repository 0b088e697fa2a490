"""The optional open_clip backend: open_clip models (OpenCLIP, and RobustVLM's TeCoA / FARE robust CLIPs) behind the
same small protocol as `HFBackend`.

`open_clip_torch` imports torchvision at import time, which does not install beside this project's torch on the
build machines (docs/clip.md); users' GPU machines have it. So nothing here imports open_clip until a model is
loaded, and a missing package is a clear error naming the extra to install. The batch path is ours: a uint8
[N, S, S, 3] batch at the model's side is normalised with the model's own mean and std (open_clip's torchvision
transform would resize and crop a PIL image, which a batch at the right side does not need); other inputs go
through open_clip's preprocessing.

    backend = load_open_clip("hf-hub:chs20/tecoa4-clip")     # online, on a machine with torchvision
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# open_clip's defaults when a model's preprocess config does not say (OpenAI's, as open_clip's constants)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as e:  # torchvision missing is the usual cause
        raise ImportError("clip backend: open_clip checkpoints need the optional open_clip backend: "
                          "pip install 'safeglass[openclip]' (open_clip_torch, which needs torchvision); "
                          f"import failed: {e}") from e
    return open_clip


class OpenClipBackend:
    """An open_clip model with its tokenizer and preprocessing, in eval mode."""

    family = "clip"
    has_class_token = True

    def __init__(self, model: Any, tokenizer: Any, preprocess: Any, identity: dict[str, Any],
                 batch_size: int = 256) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.identity = dict(identity)
        self.batch_size = int(batch_size)
        visual = model.visual
        size = getattr(visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        cfg = getattr(visual, "preprocess_cfg", None) or {}
        self.mean = tuple(cfg.get("mean", OPENAI_MEAN))
        self.std = tuple(cfg.get("std", OPENAI_STD))

    def encode_text(self, texts: Sequence[str]) -> Any:
        import torch

        with torch.inference_mode():
            f = self.model.encode_text(self.tokenizer(list(texts))).float()
        return f / f.norm(dim=-1, keepdim=True)

    def pixels(self, images: Any) -> Any:
        import torch

        if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4 \
                and images.shape[1:] == (self.image_size, self.image_size, 3):
            mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
            return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
        from PIL import Image

        return torch.stack([self.preprocess(im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im)))
                            for im in images])

    def encode_pixels(self, pixels: Any) -> Any:
        f = self.model.encode_image(pixels).float()
        return f / f.norm(dim=-1, keepdim=True)

    def encode_images(self, images: Any) -> Any:
        import torch

        if len(images) == 0:
            raise ValueError("clip backend: no images to encode")
        with torch.inference_mode():
            return torch.cat([self.encode_pixels(self.pixels(images[i:i + self.batch_size]))
                              for i in range(0, len(images), self.batch_size)])

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())


def load_open_clip(name: str, pretrained: str | None = None) -> OpenClipBackend:
    """An open_clip model: `name` is an architecture with a `pretrained` tag (`ViT-B-32`, `laion2b_s34b_b79k`) or an
    `hf-hub:` repository (the RobustVLM checkpoints), read as open_clip reads it. A user's online machine only."""
    open_clip = _import_open_clip()
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    tokenizer = open_clip.get_tokenizer(name)
    version = getattr(open_clip, "__version__", None)
    return OpenClipBackend(model, tokenizer, preprocess, {"source": "open_clip", "name": name,
                                                          "pretrained": pretrained, "open_clip": version})
