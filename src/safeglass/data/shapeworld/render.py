"""ShapeWorld rasteriser: binary shape stamps, backgrounds, textures and text glyphs, all cached numpy arrays.

Nothing here knows about scenes; it turns geometry (shape name, radius in pixels, angle) and colours
(RGB tuples) into arrays. Every cache is keyed by quantised values only, so a cache hit and a cache
miss give the same bytes and the output never depends on what was rendered before.

Determinism across machines: per-pixel tests use only +, -, *, / and comparisons (IEEE exact), and the
few trigonometric values are rounded to 1e-9 before use, so a libm or SIMD difference in the last bit
cannot move a pixel. Text is the exception: glyphs come from FreeType, whose anti-aliasing can change
between FreeType versions, so rendered text is byte-stable per font file and FreeType version.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

# Shapes as geometry: every one fits in the unit disc (radius 1) before scaling by the pixel radius.
SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart", "diamond", "ellipse",
                                "hexagon", "ring")
# Shapes that look the same at every angle: drawn at angle 0 so they share one cached stamp.
ROTATION_FREE = frozenset({"circle", "ring"})
RADIUS_STEP = 0.25  # px; radii are quantised to this so stamps can be cached
NOISE_BANK = 64  # distinct smooth-noise fields shared by noise backgrounds and occluder patches
_NOISE_GRID = 6  # noise fields are random values on a coarse grid, bilinearly upsampled


def _r9(x: float) -> float:
    return round(x, 9)


def _polygon(angles_deg: list[float], radii: list[float]) -> np.ndarray:
    """Vertices in (u, v) with v pointing down the image; angle 90 is straight up."""
    pts = [(_r9(r * math.cos(math.radians(a))), _r9(-r * math.sin(math.radians(a)))) for a, r in zip(angles_deg, radii)]
    return np.asarray(pts, dtype=np.float64)


def _regular(n: int, start: float = 90.0) -> np.ndarray:
    return _polygon([start + 360.0 * k / n for k in range(n)], [1.0] * n)


_POLYGONS: dict[str, np.ndarray] = {
    "square": _regular(4, 45.0),
    "triangle": _regular(3, 90.0),
    "hexagon": _regular(6, 0.0),
    # A rhombus, not a square on its corner: with rotation allowed a square-diamond would be a square.
    "diamond": np.array([[0.0, -1.0], [0.6, 0.0], [0.0, 1.0], [-0.6, 0.0]]),
    "star": _polygon([90.0 + 36.0 * k for k in range(10)], [1.0 if k % 2 == 0 else 0.42 for k in range(10)]),
    "cross": np.array([[-0.32, -0.95], [0.32, -0.95], [0.32, -0.32], [0.95, -0.32], [0.95, 0.32], [0.32, 0.32],
                       [0.32, 0.95], [-0.32, 0.95], [-0.32, 0.32], [-0.95, 0.32], [-0.95, -0.32], [-0.32, -0.32]]),
}


def _inside_polygon(u: np.ndarray, v: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd crossing test, one edge at a time (covers the non-convex star and cross too)."""
    inside = np.zeros(u.shape, dtype=bool)
    n = len(poly)
    for k in range(n):
        x1, y1 = poly[k]
        x2, y2 = poly[(k + 1) % n]
        if y1 == y2:
            continue
        crosses = (y1 > v) != (y2 > v)
        x_at = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (u < x_at)
    return inside


def _unit_shape(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Strict "<" on the round shapes: at whole-pixel radii "<=" adds a one-pixel pip at each of the four poles.
    if shape == "circle":
        return u * u + v * v < 1.0
    if shape == "ring":
        d = u * u + v * v
        return (d < 1.0) & (d >= 0.36)
    if shape == "ellipse":
        return u * u + (v / 0.58) ** 2 < 1.0
    if shape == "heart":
        # (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 spans x in [-1.14, 1.14], y in [-1, 1.24]: centre it and shrink it
        # into the unit disc (its lobes reach furthest out, which matters once it is rotated).
        x = u * 1.3
        y = -v * 1.3 + 0.12
        q = x * x + y * y - 1.0
        return q * q * q - x * x * y * y * y <= 0.0
    if shape in _POLYGONS:
        return _inside_polygon(u, v, _POLYGONS[shape])
    raise KeyError(f"unknown shape {shape!r}; known: {', '.join(SHAPE_NAMES)}")


@lru_cache(maxsize=16384)
def shape_stamp(shape: str, radius_q: float, angle: int) -> np.ndarray:
    """Boolean (2R+1, 2R+1) mask of `shape` centred on the middle pixel.

    `radius_q` must already be quantised (see `quantise_radius`) and `angle` is in whole degrees;
    the cache relies on both being exact.
    """
    half = int(math.ceil(radius_q * 1.05)) + 1
    off = np.arange(-half, half + 1, dtype=np.float64)
    dy, dx = off[:, None], off[None, :]
    c, s = _r9(math.cos(math.radians(angle))), _r9(math.sin(math.radians(angle)))
    u = (c * dx + s * dy) / radius_q
    v = (c * dy - s * dx) / radius_q
    stamp = _unit_shape(shape, u, v)
    stamp.setflags(write=False)
    return stamp


def quantise_radius(radius_px: float) -> float:
    return max(1.0, round(radius_px / RADIUS_STEP) * RADIUS_STEP)


def clip_box(cy: int, cx: int, half: int, size: int) -> tuple[slice, slice, slice, slice] | None:
    """Image and stamp slices for a (2*half+1)-square stamp centred at pixel (cy, cx), clipped to the image."""
    y0, y1, x0, x1 = cy - half, cy + half + 1, cx - half, cx + half + 1
    iy0, iy1, ix0, ix1 = max(y0, 0), min(y1, size), max(x0, 0), min(x1, size)
    if iy0 >= iy1 or ix0 >= ix1:
        return None
    return slice(iy0, iy1), slice(ix0, ix1), slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0)


# ----------------------------------------------------------------------------------------- fields


@lru_cache(maxsize=32)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1]."""
    t = (np.arange(size, dtype=np.float64) + 0.5) / size
    return t[:, None], t[None, :]


@lru_cache(maxsize=4)
def _noise_bank_lowres() -> np.ndarray:
    # A fixed seed: the bank is part of the world's definition, not of any one sample's randomness.
    return np.random.Generator(np.random.PCG64(20240607)).random((NOISE_BANK, _NOISE_GRID + 1, _NOISE_GRID + 1))


@lru_cache(maxsize=8192)
def noise_field(index: int, size: int) -> np.ndarray:
    """A smooth field in [0, 1], (size, size) float64; the same picture at every resolution."""
    low = _noise_bank_lowres()[index % NOISE_BANK]
    t = (np.arange(size, dtype=np.float64) + 0.5) / size * _NOISE_GRID
    i = np.minimum(t.astype(np.int64), _NOISE_GRID - 1)
    w = t - i
    rows = low[i] * (1.0 - w)[:, None] + low[i + 1] * w[:, None]  # (size, G+1): interpolate along y
    field = rows[:, i] * (1.0 - w)[None, :] + rows[:, i + 1] * w[None, :]
    lo, hi = field.min(), field.max()
    field = (field - lo) / (hi - lo) if hi > lo else field * 0.0
    field.setflags(write=False)
    return field


@lru_cache(maxsize=64)
def ramp(direction: int, size: int) -> np.ndarray:
    """A linear ramp from 0 to 1 along one of 8 directions (multiples of 45 degrees)."""
    y, x = _grid(size)
    dx, dy = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)][direction % 8]
    t = dx * x + dy * y
    t = (t - t.min()) / (t.max() - t.min())
    t.setflags(write=False)
    return t


@lru_cache(maxsize=64)
def checker(cells: int, size: int) -> np.ndarray:
    y, x = _grid(size)
    out = ((np.floor(y * cells) + np.floor(x * cells)) % 2).astype(np.float64)
    out.setflags(write=False)
    return out


def _mix(field: np.ndarray, a: tuple[int, int, int], b: tuple[int, int, int]) -> np.ndarray:
    ca, cb = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.rint(ca + field[..., None] * (cb - ca)).astype(np.uint8)


@lru_cache(maxsize=4096)
def background_image(kind: str, rgb: tuple[int, int, int], alt: tuple[int, int, int], variant: int,
                     size: int) -> np.ndarray:
    """Read-only (size, size, 3) uint8 background; copy before drawing on it."""
    if kind == "plain":
        img = np.empty((size, size, 3), np.uint8)
        img[:] = rgb
    elif kind == "gradient":
        img = _mix(ramp(variant, size), rgb, alt)
    elif kind == "noise":
        img = _mix(noise_field(variant, size), rgb, alt)
    elif kind == "checker":
        img = _mix(checker(4 + 2 * (variant % 3), size), rgb, alt)
    else:
        raise KeyError(f"unknown background kind {kind!r}")
    img.setflags(write=False)
    return img


@lru_cache(maxsize=64)
def texture_pattern(texture: str, variant: int, size: int) -> np.ndarray | None:
    """Boolean (size, size) mask of the second colour of a texture, in image coordinates; None for solid."""
    if texture == "solid":
        return None
    iy = np.arange(size)[:, None]
    ix = np.arange(size)[None, :]
    if texture == "striped":
        width = max(2, round(size / 24))
        coord = [iy + 0 * ix, ix + 0 * iy, ix + iy, ix - iy + size][variant % 4]
        out = (coord // width) % 2 == 1
    elif texture == "dotted":
        step = max(4, round(size / 10))
        rad = step * 0.3
        cy = iy % step - (step - 1) / 2
        cx = ix % step - (step - 1) / 2
        out = cy * cy + cx * cx <= rad * rad
    else:
        raise KeyError(f"unknown texture {texture!r}")
    out.setflags(write=False)
    return out


# ------------------------------------------------------------------------------------------- text

FONT_FILES = {"sans": "DejaVuSans.ttf", "serif": "DejaVuSerif.ttf", "mono": "DejaVuSansMono.ttf"}
_FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"),
              Path("/usr/share/fonts/TTF")]


@lru_cache(maxsize=8)
def font_path(family: str) -> str | None:
    """The DejaVu file for a family, from the system or matplotlib's bundled copy; None means PIL's default."""
    name = FONT_FILES.get(family)
    if name is None:
        raise KeyError(f"unknown font {family!r}; known: {', '.join(FONT_FILES)}")
    dirs = list(_FONT_DIRS)
    try:  # matplotlib ships the DejaVu fonts; only look if it is installed
        import matplotlib

        dirs.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    except ImportError:
        pass
    for d in dirs:
        if (d / name).is_file():
            return str(d / name)
    return None


@lru_cache(maxsize=256)
def _font(family: str, px: int):
    from PIL import ImageFont

    path = font_path(family)
    if path is None:
        return ImageFont.load_default(size=px)
    # BASIC layout: raqm is installed on some machines and not others and shapes text differently.
    return ImageFont.truetype(path, px, layout_engine=ImageFont.Layout.BASIC)


@lru_cache(maxsize=8192)
def glyph(word: str, family: str, px: int) -> np.ndarray:
    """Coverage of `word` in [0, 1], float32 (h, w), cropped to the ink's bounding box."""
    from PIL import Image, ImageDraw

    font = _font(family, px)
    x0, y0, x1, y1 = font.getbbox(word)
    w, h = max(1, x1 - x0), max(1, y1 - y0)
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).text((-x0, -y0), word, fill=255, font=font)
    out = np.asarray(im, dtype=np.float32) / 255.0
    out.setflags(write=False)
    return out


@lru_cache(maxsize=8192)
def fitted_glyph(word: str, family: str, px: int, max_w: int, max_h: int) -> np.ndarray:
    """The glyph at the largest size <= px that fits in (max_h, max_w), so a long word never leaves the image."""
    g = glyph(word, family, px)
    while (g.shape[1] > max_w or g.shape[0] > max_h) and px > 6:
        px -= 1
        g = glyph(word, family, px)
    return g[:max_h, :max_w]


def clear_caches() -> None:
    for f in (shape_stamp, noise_field, ramp, checker, background_image, texture_pattern, glyph, fitted_glyph):
        f.cache_clear()
