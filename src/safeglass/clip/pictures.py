"""PNG pictures for the CLIP report, drawn with PIL (matplotlib is not a dependency): a grid of failures (clean
image, attacked image, the attacked image's patch attribution towards the wrong class) and a strip of variation
examples (unvaried scene beside the varied one), each cell captioned with what the model said."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CELL = 160         # pixels a picture cell is drawn at (64 px scenes are shown 2.5x)
CAPTION = 49       # pixels under a cell for three caption lines
LINE_CHARS = 25    # characters a caption line holds at this cell width


def overlay(image: np.ndarray, attribution: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """`image` in grey with the positive part of a (G, G) patch map in red on top (scaled to its own maximum):
    where the evidence for the explained class is."""
    s = image.shape[0]
    grey = (image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None].repeat(3, -1)
    pos = np.clip(attribution, 0, None)
    heat = pos / pos.max() if pos.max() > 0 else pos
    g = heat.shape[0]
    up = np.kron(heat, np.ones((s // g, s // g)))
    up = np.pad(up, ((0, s - up.shape[0]), (0, s - up.shape[1])))[..., None]
    red = np.array([230.0, 30.0, 30.0])
    out = grey * (1 - alpha * up) + red * alpha * up
    return np.clip(out, 0, 255).astype(np.uint8)


def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1 has only the bitmap font
        return ImageFont.load_default()


def grid(rows: Sequence[Sequence[tuple[np.ndarray, str]]], path: str | Path, title: str = "") -> Path:
    """Save a grid of captioned cells (each an (image, caption) pair; captions break on '\\n' and wrap, three
    lines at most) as a PNG."""
    from PIL import Image, ImageDraw

    if not rows:
        raise ValueError("grid: no rows to draw")
    n_cols = max(len(r) for r in rows)
    top = 24 if title else 0
    canvas = Image.new("RGB", (n_cols * (CELL + 8) + 8, top + len(rows) * (CELL + CAPTION + 8) + 8), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(12)
    if title:
        draw.text((8, 5), title, fill="black", font=_font(14))
    for r, row in enumerate(rows):
        for c, (img, caption) in enumerate(row):
            x, y = 8 + c * (CELL + 8), top + 8 + r * (CELL + CAPTION + 8)
            canvas.paste(Image.fromarray(np.asarray(img, np.uint8)).resize((CELL, CELL), Image.NEAREST), (x, y))
            lines = [w for part in caption.split("\n") for w in textwrap.wrap(part, LINE_CHARS) or [""]]
            for k, line in enumerate(lines[:3]):
                draw.text((x, y + CELL + 2 + 15 * k), line, fill="black", font=font)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, format="PNG", optimize=True)
    return out
