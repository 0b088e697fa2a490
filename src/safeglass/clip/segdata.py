"""Segmentation ground truth: ShapeWorld masks of ShapeCLIP's world and users' VOC-format folders.

A `SegSet` holds square uint8 images at the model's side and label maps of the same side: 0 background, class i
as i + 1, 255 ignored. ShapeWorld's renderer gives per-pixel object ids (0 background, j + 1 where object j is
seen; occluders hide objects and count as background); each id maps to its object's shape class. A VOC folder is
JPEGImages/*.jpg with SegmentationClass/*.png (palette PNGs whose indices are the labels, 255 the outlines VOC
ignores) and, optionally, ImageSets/Segmentation/<split>.txt naming the images; images are resized on their
shorter side and centre-cropped as CLIP's processor does, masks the same way with nearest-neighbour sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.clip.segment import IGNORE

VOC_CLASSES: tuple[str, ...] = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
                                "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep",
                                "sofa", "train", "tv monitor")


@dataclass(frozen=True)
class SegSet:
    images: np.ndarray              # uint8 (N, S, S, 3)
    masks: np.ndarray               # uint8 (N, S, S): 0 background, class i as i + 1, 255 ignored
    classes: tuple[str, ...]        # without the background
    labels: np.ndarray              # (N,) the main object's class (ShapeWorld), -1 where there is none (VOC)
    scenes: list[Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def label_names(self) -> tuple[str, ...]:
        return ("background", *self.classes)


def shapeworld_masks(scenes: list[Any], classes: tuple[str, ...], size: int) -> np.ndarray:
    """uint8 (N, S, S) class maps of rendered scenes."""
    from safeglass.data.shapeworld.world import render

    out = np.zeros((len(scenes), size, size), np.uint8)
    for i, s in enumerate(scenes):
        ids = render(s, size)[1].ids
        lut = np.zeros(256, np.uint8)
        for j, o in enumerate(s.objects):
            lut[j + 1] = classes.index(o.shape) + 1
        out[i] = lut[ids]
    return out


def shapeworld(n: int, seed: int, image_size: int, split: str = "test") -> SegSet:
    """`n` scenes of ShapeCLIP's world (`clip.images.shapeworld`, the same split and seeds) with their masks."""
    from safeglass.clip import images

    data = images.shapeworld(n, seed, image_size, split)
    masks = shapeworld_masks(data.scenes or [], data.classes, image_size)
    return SegSet(data.images, masks, data.classes, data.labels, data.scenes, data.meta)


def _square(im: Any, size: int, resample: int) -> np.ndarray:
    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), resample)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)))


def voc(path: str | Path, image_size: int, split: str = "val", classes: tuple[str, ...] | None = None,
        limit: int | None = None, seed: int = 0) -> SegSet:
    """A VOC-format folder: the images of ImageSets/Segmentation/`split`.txt when it exists, else every mask in
    SegmentationClass; `classes` (without background) default to VOC's 20; `limit` keeps a seeded subset."""
    from PIL import Image

    root = Path(path)
    seg_dir, img_dir = root / "SegmentationClass", root / "JPEGImages"
    if not seg_dir.is_dir() or not img_dir.is_dir():
        raise FileNotFoundError(f"VOC folder {root}: needs JPEGImages/ and SegmentationClass/")
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if listing.is_file():
        ids = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        ids = sorted(p.stem for p in seg_dir.glob("*.png"))
    if not ids:
        raise ValueError(f"VOC folder {root}: no segmentation masks")
    if limit is not None and limit < len(ids):
        ids = [ids[i] for i in np.sort(np.random.default_rng(seed).choice(len(ids), limit, replace=False))]
    names = tuple(classes) if classes else VOC_CLASSES
    imgs, masks = [], []
    for k in ids:
        jpg = img_dir / f"{k}.jpg"
        if not jpg.is_file():
            raise FileNotFoundError(f"VOC folder {root}: {jpg.name} is listed but missing")
        with Image.open(jpg) as im:
            imgs.append(_square(im.convert("RGB"), image_size, Image.BICUBIC).astype(np.uint8))
        with Image.open(seg_dir / f"{k}.png") as m:
            if m.mode not in ("P", "L"):
                raise ValueError(f"VOC folder {root}: {k}.png is {m.mode}; expected a palette (P) or grey (L) PNG "
                                 "whose values are the labels")
            arr = _square(m, image_size, Image.NEAREST).astype(np.uint8)
        bad = (arr != IGNORE) & (arr > len(names))
        if bad.any():
            raise ValueError(f"VOC folder {root}: {k}.png holds label {int(arr[bad].max())}, beyond the "
                             f"{len(names)} classes (+ background 0, 255 ignored)")
        masks.append(arr)
    return SegSet(np.stack(imgs), np.stack(masks), names, np.full(len(ids), -1, np.int64), None,
                  {"source": "voc", "path": str(root), "split": split, "n": len(ids), "seed": seed,
                   "image_size": image_size, "ids": ids[:20]})


def write_voc(root: str | Path, images: np.ndarray, masks: np.ndarray, split: str = "val") -> list[str]:
    """Write a VOC-format folder (JPEG images, palette PNG masks, a split listing): the tests' fixture, and a
    way to hand ShapeWorld masks to other tools."""
    from PIL import Image

    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    palette = _voc_palette()
    ids = [f"{i:06d}" for i in range(len(images))]
    for k, img, m in zip(ids, images, masks):
        Image.fromarray(img).save(root / "JPEGImages" / f"{k}.jpg", quality=95)
        p = Image.fromarray(m.astype(np.uint8), mode="P")
        p.putpalette(palette)
        p.save(root / "SegmentationClass" / f"{k}.png")
    (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    return ids


def _voc_palette() -> list[int]:
    """VOC's colour map (bit-interleaved label index), 256 entries."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal
