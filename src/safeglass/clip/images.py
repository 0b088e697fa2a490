"""Labelled image sets for the CLIP tasks: ShapeWorld splits of ShapeCLIP's world (deterministic by seed, with their
scenes, so the attack can place words as ShapeCLIP saw them) and any folder of class subfolders (ImageNet-typo
style), each resized to the model's square input."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# A split's scenes come from (seed, this offset, split index): far from ShapeCLIP's training stream (seeds 0..)
# and from its card's held-out set (seed + 1,000,003).
SPLIT_SEED_OFFSET = 19_000_019
SPLITS = {"test": 0, "fit": 1}


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray             # uint8 (N, S, S, 3)
    labels: np.ndarray             # (N,) class index
    classes: tuple[str, ...]
    scenes: list[Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # Per image, for sets that come attacked (RTA-100, PAINT, SCAM; clip/datasets.py): the written word, the share
    # of the image under a post-it note (nan: not recorded) and the file each image was read from.
    words: tuple[str, ...] | None = None
    postit_area: np.ndarray | None = None
    files: tuple[str, ...] | None = None


def shapeworld(n: int, seed: int, image_size: int, split: str = "test") -> ImageSet:
    """`n` word-free scenes of ShapeCLIP's world (one large shape on a textured background), labelled by shape."""
    from safeglass.data.shapeworld.world import render, sample_scene
    from safeglass.organisms.shapeclip import ShapeCLIPConfig, world_config

    if split not in SPLITS:
        raise ValueError(f"shapeworld split {split!r}; known: {', '.join(SPLITS)}")
    cfg = ShapeCLIPConfig()
    rng = np.random.default_rng([seed, SPLIT_SEED_OFFSET, SPLITS[split]])
    wc = world_config(cfg)
    scenes = [sample_scene(wc, rng) for _ in range(n)]
    images = np.stack([render(s, image_size)[0] for s in scenes]) if scenes else np.zeros((0, image_size,
                                                                                           image_size, 3), np.uint8)
    labels = np.array([cfg.shapes.index(s.main.shape) for s in scenes], np.int64)
    return ImageSet(images, labels, tuple(cfg.shapes), scenes,
                    {"source": "shapeworld", "world": "shapeclip", "split": split, "n": n, "seed": seed,
                     "image_size": image_size})


def square(path: Path, size: int) -> np.ndarray:
    """An image file resized on its shorter side and centre-cropped to `size`, as CLIP's processor does."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def folder(path: str | Path, image_size: int, limit: int | None = None, seed: int = 0) -> ImageSet:
    """Images under `path/<class>/`, class names from the subfolders (sorted; underscores read as spaces);
    `limit` keeps a seeded subset."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ValueError(f"image folder {root}: no images under class subfolders ({', '.join(IMAGE_SUFFIXES)})")
    if limit is not None and limit < len(files):
        keep = np.sort(np.random.default_rng(seed).choice(len(files), limit, replace=False))
        files = [files[i] for i in keep]
    images = np.stack([square(f, image_size) for f, _ in files])
    return ImageSet(images, np.array([i for _, i in files], np.int64), tuple(c.replace("_", " ") for c in classes),
                    None, {"source": "folder", "path": str(root), "n": len(files), "seed": seed,
                           "image_size": image_size})
