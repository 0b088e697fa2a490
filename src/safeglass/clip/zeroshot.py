"""Zero-shot classification: template ensembles, text embeddings cached by content, batched image encoding.

A class's text embedding is the normalised mean of its templates' embeddings (CLIP's prompt ensembling). The
cache key is (model identity, class names, templates), so a second task on the same model and classes reuses the
embeddings, and a changed template or rebuilt model misses. Accuracy comes with its Wilson interval.

    cache = TextCache()
    result = classify(backend, images, labels, ["circle", "star"], ["a photo of a {}"], cache)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from safeglass.hashing import content_hash
from safeglass.stats import proportion

# Templates that ShapeCLIP's word-level vocabulary can read (any other word is [UNK] to it).
SHAPECLIP_TEMPLATES: tuple[str, ...] = ("a photo of a {}", "a {}", "a photo of the {}", "the {}",
                                        "a photo of a large {}", "a large {}")
# The first templates of CLIP's ImageNet ensemble, for real models.
OPENAI_TEMPLATES: tuple[str, ...] = ("a photo of a {}.", "a bad photo of a {}.", "a photo of many {}.",
                                     "a sculpture of a {}.", "a rendering of a {}.", "graffiti of a {}.",
                                     "a cropped photo of the {}.", "a tattoo of a {}.", "a bright photo of a {}.",
                                     "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.")


class TextCache:
    """Text embeddings by content key; `encoded` counts the texts actually sent to a model (the tests read it)."""

    def __init__(self) -> None:
        self._store: dict[str, Any] = {}
        self.encoded = 0

    @staticmethod
    def key(identity: dict[str, Any], classes: Sequence[str], templates: Sequence[str]) -> str:
        return content_hash({"model": identity, "classes": list(classes), "templates": list(templates)})

    def class_embeddings(self, backend: Any, classes: Sequence[str], templates: Sequence[str]) -> Any:
        """[C, D] unit-norm class embeddings, one template ensemble a class."""
        if not classes or not templates:
            raise ValueError("zero-shot: give at least one class and one template")
        k = self.key(backend.identity, classes, templates)
        if k not in self._store:
            self._store[k] = self._ensemble(backend, classes, templates)
        return self._store[k]

    def per_template(self, backend: Any, classes: Sequence[str], templates: Sequence[str]) -> Any:
        """[T, C, D] unit-norm embeddings, each template kept apart (SCAM averages over templates)."""
        return _stack([self.class_embeddings(backend, classes, [t]) for t in templates])

    def _ensemble(self, backend: Any, classes: Sequence[str], templates: Sequence[str]) -> Any:
        texts = [t.format(c) for c in classes for t in templates]
        self.encoded += len(texts)
        f = backend.encode_text(texts).reshape(len(classes), len(templates), -1).mean(1)
        return f / f.norm(dim=-1, keepdim=True)


def _stack(tensors: list[Any]) -> Any:
    import torch

    return torch.stack(tensors)


def logits(backend: Any, image_features: Any, class_features: Any) -> Any:
    """[N, C] similarities scaled as the model scales them (the argmax does not depend on the scale)."""
    return backend.logit_scale() * image_features @ class_features.T


def predict(backend: Any, images: Any, classes: Sequence[str], templates: Sequence[str], cache: TextCache,
            image_features: Any = None) -> np.ndarray:
    """Predicted class index per image; pass `image_features` to score images already encoded."""
    feats = backend.encode_images(images) if image_features is None else image_features
    return logits(backend, feats, cache.class_embeddings(backend, classes, templates)).argmax(-1).numpy()


def accuracy(pred: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Share of correct predictions with its 95 % Wilson interval (rate, ci_low, ci_high, k, n)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.shape != labels.shape:
        raise ValueError(f"accuracy: {pred.shape[0]} predictions for {labels.shape[0]} labels")
    return proportion(int((pred == labels).sum()), int(labels.size))


def classify(backend: Any, images: Any, labels: Sequence[int], classes: Sequence[str], templates: Sequence[str],
             cache: TextCache | None = None) -> dict[str, Any]:
    """Zero-shot accuracy of `images` (uint8 arrays or PIL images) against `classes`."""
    cache = cache if cache is not None else TextCache()
    pred = predict(backend, images, classes, templates, cache)
    return {"accuracy": accuracy(pred, np.asarray(labels)), "predictions": pred.tolist()}
