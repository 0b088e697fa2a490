"""Small PNG thumbnails of the images a model saw, as data URIs, so a report shows them without any file."""

from __future__ import annotations

import base64
import io
from pathlib import Path

THUMB_PX = 160
MAX_IMAGES = 3000  # beyond this a report lists paths only: thumbnails would make the file unwieldy


def thumbnail_uri(path: str | Path, px: int = THUMB_PX) -> str | None:
    """A ``data:image/png`` URI of the image at ``path`` fitted into ``px`` x ``px``; None if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((px, px))
            buf = io.BytesIO()
            img.save(buf, format="PNG", optimize=True)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnails(paths: list[str], limit: int = MAX_IMAGES) -> dict[str, str]:
    """``{path: data URI}`` for the first ``limit`` distinct readable paths."""
    out: dict[str, str] = {}
    for p in dict.fromkeys(paths):
        if len(out) >= limit:
            break
        uri = thumbnail_uri(p)
        if uri is not None:
            out[p] = uri
    return out
