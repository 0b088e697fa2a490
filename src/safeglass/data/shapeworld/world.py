"""ShapeWorld: a procedural world of coloured shapes with full ground truth, for training model organisms.

A `Scene` is plain data (shapes, colours, sizes, positions, textures, background, occluders, optional
written text); `render(scene, size)` turns it into an image and per-pixel masks; captions and VQA pairs
come from `shapeworld_text`. Scenes are resolution-free (positions and radii are fractions of the image
side), so one scene renders at 32, 64 or 224 px.

    world = ShapeWorld(seed=0, config=ShapeWorldConfig(p_text=0.3))
    batch = world.sample_batch(256)            # dict of numpy arrays, for training
    scene = world.scene()
    img, masks = render(scene, size=64)         # uint8 (64, 64, 3), Masks(ids, text, postit, occluder)
    attacked = with_text(scene, "star", postit=True)   # a typographic attack on the same scene

Randomness: every function takes a `numpy.random.Generator` (or a seed) and draws from nothing else;
scenes are drawn one after another from the stream, so the i-th scene of a seed does not depend on
how many scenes are drawn at once or in which batch sizes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from safeglass.data.shapeworld import render as R

# ------------------------------------------------------------------------------------- vocabulary

SHAPES: tuple[str, ...] = R.SHAPE_NAMES
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 220, 40), "green": (40, 170, 60),
    "cyan": (40, 200, 210), "blue": (40, 80, 220), "purple": (140, 60, 190), "pink": (245, 130, 190),
    "brown": (130, 80, 40), "white": (245, 245, 245), "gray": (128, 128, 128), "black": (20, 20, 20),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SIZES: dict[str, float] = {"small": 0.10, "medium": 0.15, "large": 0.22}  # radius as a fraction of the side
SIZE_NAMES: tuple[str, ...] = tuple(SIZES)
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted")
BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "noise", "checker")
FONTS: tuple[str, ...] = tuple(R.FONT_FILES)
REGIONS: tuple[str, ...] = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom",
                            "bottom right")
EXTRA_WORDS: tuple[str, ...] = ("dog", "cat", "car", "apple", "stop", "safe", "yes", "no", "hello", "danger")
POSTIT_RGB = (252, 246, 196)
_OCCLUDER_RGB = ((70, 70, 70), (190, 190, 190))


def _luma(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _shade(rgb: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    """Darker for light colours, lighter for dark ones: the second tone of textures and backgrounds."""
    if _luma(rgb) > 110:
        return tuple(int(round(c * (1 - amount))) for c in rgb)  # type: ignore[return-value]
    return tuple(int(round(c + (255 - c) * amount)) for c in rgb)  # type: ignore[return-value]


TEXTURE_SHADE: dict[str, tuple[int, int, int]] = {n: _shade(c, 0.45) for n, c in COLOURS.items()}
BACKGROUND_ALT: dict[str, tuple[int, int, int]] = {n: _shade(c, 0.3) for n, c in COLOURS.items()}


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith(("s", "x", "ch", "sh")) else "s")


# ------------------------------------------------------------------------------------------ scene


@dataclass(frozen=True, slots=True)
class Obj:
    """One shape. `x`, `y` (centre) and `radius` are fractions of the image side; `angle` in degrees."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    radius: float
    angle: int = 0
    texture: str = "solid"
    texture_variant: int = 0

    @property
    def region(self) -> str:
        return region_of(self.x, self.y)


@dataclass(frozen=True, slots=True)
class Background:
    kind: str = "plain"
    colour: str = "white"
    variant: int = 0  # gradient direction, noise field or checker size


@dataclass(frozen=True, slots=True)
class Occluder:
    """A grey noise patch (x0, y0, x1, y1 as fractions) hiding part of object `target`."""

    x0: float
    y0: float
    x1: float
    y1: float
    target: int = 0
    variant: int = 0


@dataclass(frozen=True, slots=True)
class TextSpec:
    """Written text. `size` is the font size as a fraction of the side; (x, y) is the text's centre."""

    word: str
    font: str = "sans"
    size: float = 0.2
    colour: str = "black"
    opacity: float = 1.0
    x: float = 0.5
    y: float = 0.5
    postit: bool = False


@dataclass(frozen=True, slots=True)
class Scene:
    """Everything about one image. `objects[0]` is the main object: its shape is the class label."""

    objects: tuple[Obj, ...]
    background: Background = Background()
    occluders: tuple[Occluder, ...] = ()
    text: TextSpec | None = None
    qa_seed: int = 0  # picks the absent shapes and question order of the VQA pairs

    @property
    def main(self) -> Obj:
        return self.objects[0]

    @property
    def label(self) -> int:
        return SHAPES.index(self.objects[0].shape)

    def count(self, shape: str | None = None, colour: str | None = None) -> int:
        return sum((shape is None or o.shape == shape) and (colour is None or o.colour == colour) for o in self.objects)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scene:
        return cls(objects=tuple(Obj(**o) for o in d["objects"]), background=Background(**d["background"]),
                   occluders=tuple(Occluder(**o) for o in d.get("occluders", ())),
                   text=TextSpec(**d["text"]) if d.get("text") else None, qa_seed=int(d.get("qa_seed", 0)))


def region_of(x: float, y: float) -> str:
    col = 0 if x < 1 / 3 else (2 if x > 2 / 3 else 1)
    row = 0 if y < 1 / 3 else (2 if y > 2 / 3 else 1)
    return REGIONS[3 * row + col]


# ----------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ShapeWorldConfig:
    """What a world draws from. Probabilities are per scene; weights need not sum to 1."""

    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = COLOUR_NAMES
    background_colours: tuple[str, ...] = COLOUR_NAMES
    sizes: tuple[str, ...] = SIZE_NAMES
    min_objects: int = 1
    max_objects: int = 3
    p_count_scene: float = 0.2  # all objects share shape and colour ("three red stars")
    max_count: int = 5
    backgrounds: Mapping[str, float] = field(default_factory=lambda: {"plain": 0.4, "gradient": 0.2, "noise": 0.2,
                                                                      "checker": 0.2})
    textures: Mapping[str, float] = field(default_factory=lambda: {"solid": 0.6, "striped": 0.2, "dotted": 0.2})
    max_rotation: int = 30  # degrees either way, in steps of 15
    p_occluder: float = 0.15
    p_text: float = 0.0  # the clean world has no writing; typographic worlds raise this
    text_words: tuple[str, ...] | None = None  # None: class names, colour names and a few other words
    fonts: tuple[str, ...] = FONTS
    text_size: tuple[float, float] = (0.16, 0.28)
    text_opacity: tuple[float, float] = (0.7, 1.0)
    p_postit: float = 0.3

    def __post_init__(self) -> None:
        for name, have, known in (("shapes", self.shapes, SHAPES), ("colours", self.colours, COLOUR_NAMES),
                                  ("background_colours", self.background_colours, COLOUR_NAMES),
                                  ("sizes", self.sizes, SIZE_NAMES), ("backgrounds", tuple(self.backgrounds),
                                                                      BACKGROUNDS),
                                  ("textures", tuple(self.textures), TEXTURES), ("fonts", self.fonts, FONTS)):
            bad = [v for v in have if v not in known]
            if bad or not have:
                raise ValueError(f"ShapeWorldConfig.{name}: unknown {bad} (known: {', '.join(known)})")
        if len(self.colours) < 2:
            raise ValueError("ShapeWorldConfig.colours: need at least two, so objects can differ from the background")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError("ShapeWorldConfig: need 1 <= min_objects <= max_objects")

    @property
    def words(self) -> tuple[str, ...]:
        return self.text_words if self.text_words is not None else SHAPES + COLOUR_NAMES + EXTRA_WORDS

    @classmethod
    def coerce(cls, config: ShapeWorldConfig | Mapping[str, Any] | None) -> ShapeWorldConfig:
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"ShapeWorldConfig: unknown keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


# --------------------------------------------------------------------------------------- sampling


class _Draw:
    """Uniforms drawn from the Generator in blocks: one numpy call per ~64 draws instead of one per draw,
    which is most of the sampling time otherwise. The stream is still a pure function of the Generator."""

    __slots__ = ("rng", "buf", "i")

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.buf: list[float] = rng.random(64).tolist()
        self.i = 0

    def u(self) -> float:
        if self.i >= len(self.buf):
            self.buf = self.rng.random(64).tolist()
            self.i = 0
        self.i += 1
        return self.buf[self.i - 1]

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.u()

    def int(self, n: int) -> int:
        return min(int(self.u() * n), n - 1)

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.int(len(seq))]

    def weighted(self, weights: Mapping[str, float]) -> str:
        total = sum(weights.values())
        t = self.u() * total
        for k, w in weights.items():
            t -= w
            if t < 0:
                return k
        return next(reversed(weights))


def _angle(d: _Draw, shape: str, max_rotation: int) -> int:
    if shape in R.ROTATION_FREE or max_rotation <= 0:
        return 0
    steps = max_rotation // 15
    return 15 * (d.int(2 * steps + 1) - steps)


def _place(d: _Draw, radius: float, placed: list[Obj], tries: int = 24) -> tuple[float, float] | None:
    margin = radius * 1.05 + 0.02
    for _ in range(tries):
        x, y = d.uniform(margin, 1 - margin), d.uniform(margin, 1 - margin)
        if all(math.hypot(x - o.x, y - o.y) >= (radius + o.radius) * 1.08 + 0.02 for o in placed):
            return x, y
    return None


def _obj(d: _Draw, cfg: ShapeWorldConfig, shape: str, colour: str, size: str, placed: list[Obj]) -> Obj | None:
    radius = SIZES[size] * d.uniform(0.9, 1.1)
    at = _place(d, radius, placed)
    if at is None and size != "small":
        size = "small"
        radius = SIZES[size] * d.uniform(0.9, 1.1)
        at = _place(d, radius, placed)
    if at is None:
        return None
    texture = d.weighted(cfg.textures)
    return Obj(shape, colour, size, round(at[0], 4), round(at[1], 4), round(radius, 4),
               _angle(d, shape, cfg.max_rotation), texture, d.int(4))


def _box_overlap(box: tuple[float, float, float, float], o: Obj) -> float:
    """Fraction of o's bounding box inside `box`."""
    x0, y0, x1, y1 = box
    w = max(0.0, min(x1, o.x + o.radius) - max(x0, o.x - o.radius))
    h = max(0.0, min(y1, o.y + o.radius) - max(y0, o.y - o.radius))
    return w * h / (4 * o.radius * o.radius)


def _occluder(d: _Draw, objects: Sequence[Obj]) -> Occluder | None:
    target = 0 if d.u() < 0.7 else d.int(len(objects))
    o = objects[target]
    side, cover = d.int(4), d.uniform(0.25, 0.5)
    along0, along1 = d.uniform(0.2, 0.6), d.uniform(0.2, 0.6)  # how far the patch reaches past the centre
    r = o.radius
    if side == 0:  # from the left
        box = (o.x - r - 0.04, o.y - r * along0 * 2, o.x - r + 2 * r * cover, o.y + r * along1 * 2)
    elif side == 1:  # from the right
        box = (o.x + r - 2 * r * cover, o.y - r * along0 * 2, o.x + r + 0.04, o.y + r * along1 * 2)
    elif side == 2:  # from the top
        box = (o.x - r * along0 * 2, o.y - r - 0.04, o.x + r * along1 * 2, o.y - r + 2 * r * cover)
    else:
        box = (o.x - r * along0 * 2, o.y + r - 2 * r * cover, o.x + r * along1 * 2, o.y + r + 0.04)
    box = tuple(round(min(1.0, max(0.0, v)), 4) for v in box)
    # A patch must never hide most of another object, or counts and "is there" answers would lie.
    if any(_box_overlap(box, p) > 0.3 for i, p in enumerate(objects) if i != target):
        return None
    return Occluder(*box, target=target, variant=d.int(R.NOISE_BANK))


def _text_width(word: str, size: float) -> float:
    return min(0.96, 0.7 * size * len(word))  # DejaVu's advances are 0.55-0.7 em: err wide


def _fit_x(word: str, size: float, x: float) -> float:
    """The centre the renderer will actually use: it shifts text that would run off the image."""
    half = _text_width(word, size) / 2
    return min(max(x, half + 0.02), 1 - half - 0.02)


def _text_box(word: str, size: float, x: float, y: float) -> tuple[float, float, float, float]:
    half = _text_width(word, size) / 2
    return x - half, y - size * 0.6, x + half, y + size * 0.6


def auto_text_position(scene: Scene, word: str, size: float, d: _Draw | None = None) -> tuple[float, float]:
    """The candidate centre (top band, bottom band, middle) whose text box covers least of the objects."""
    cands = [(0.5, 0.14), (0.5, 0.86), (0.5, 0.5), (0.3, 0.14), (0.7, 0.86)]
    if d is not None:
        cands = [(min(0.8, max(0.2, x + d.uniform(-0.08, 0.08))), y) for x, y in cands]
    cands = [(_fit_x(word, size, x), y) for x, y in cands]
    return min(cands, key=lambda c: sum(_box_overlap(_text_box(word, size, *c), o) for o in scene.objects))


def _text(d: _Draw, cfg: ShapeWorldConfig, scene: Scene) -> TextSpec:
    word = d.choice(cfg.words)
    font = d.choice(cfg.fonts)
    size = round(d.uniform(*cfg.text_size), 4)
    postit = d.u() < cfg.p_postit
    if postit:
        colour = d.choice(("black", "blue", "red"))
    else:
        colour = d.choice([c for c in COLOUR_NAMES if c != scene.background.colour])
    opacity = round(d.uniform(*cfg.text_opacity), 3)
    x, y = auto_text_position(scene, word, size, d)
    if postit and any(_box_overlap(_text_box(word, size, x, y), o) > 0.4 for o in scene.objects):
        postit = False  # an opaque note over most of a shape would make counts and "is there" answers lie
    return TextSpec(word, font, size, colour, opacity, round(x, 4), round(y, 4), postit)


def sample_scene(config: ShapeWorldConfig | Mapping[str, Any] | None = None,
                 rng: np.random.Generator | int | None = None) -> Scene:
    """One random scene. The main object is placed first and distractors are never larger than it."""
    cfg = ShapeWorldConfig.coerce(config)
    d = _Draw(np.random.default_rng(rng))
    bg = Background(d.weighted(cfg.backgrounds), d.choice(cfg.background_colours), d.int(R.NOISE_BANK))
    palette = [c for c in cfg.colours if c != bg.colour] or list(cfg.colours)
    objects: list[Obj] = []
    if cfg.max_objects >= 2 and d.u() < cfg.p_count_scene:
        n = 2 + d.int(max(1, min(cfg.max_count, 9) - 1))
        shape, colour = d.choice(cfg.shapes), d.choice(palette)
        small = [s for s in cfg.sizes if s != "large"] or list(cfg.sizes)
        for _ in range(n):
            o = _obj(d, cfg, shape, colour, d.choice(small), objects)
            if o is not None:
                objects.append(o)
    else:
        n = cfg.min_objects + d.int(cfg.max_objects - cfg.min_objects + 1)
        main_size = d.choice(cfg.sizes)
        for k in range(n):
            size = main_size if k == 0 else d.choice([s for s in cfg.sizes
                                                      if SIZES[s] <= SIZES[main_size]] or [main_size])
            o = _obj(d, cfg, d.choice(cfg.shapes), d.choice(palette), size, objects)
            if o is not None:
                objects.append(o)
            elif k == 0:  # the main object always fits on an empty canvas; keep the invariant explicit
                raise RuntimeError("ShapeWorld: could not place the main object")
    occluders: tuple[Occluder, ...] = ()
    if d.u() < cfg.p_occluder:
        occ = _occluder(d, objects)
        occluders = (occ,) if occ is not None else ()
    scene = Scene(tuple(objects), bg, occluders, None, d.int(2**31 - 1))
    if d.u() < cfg.p_text:
        scene = dataclasses.replace(scene, text=_text(d, cfg, scene))
    return scene


# ----------------------------------------------------------------------------------------- render


@dataclass(frozen=True, slots=True)
class Masks:
    """Ground-truth masks of one render.

    ids: uint8 (H, W), 0 for background and i + 1 where object i is what is seen (occluders, post-its and
    strokes of text drawn at opacity >= 0.5 hide objects). text: bool, glyph coverage >= 0.5 (whatever
    the opacity). postit / occluder: bool. areas: each object's pixel count before anything hid it.
    """

    ids: np.ndarray
    text: np.ndarray
    postit: np.ndarray
    occluder: np.ndarray
    areas: tuple[int, ...] = ()

    def object(self, i: int) -> np.ndarray:
        return self.ids == i + 1

    def visible_fraction(self) -> np.ndarray:
        """Per object, the share of its pixels still seen after occluders, post-its and text."""
        seen = np.bincount(self.ids.ravel(), minlength=len(self.areas) + 1)[1:len(self.areas) + 1]
        return seen / np.maximum(np.asarray(self.areas, np.float64), 1.0)


def _px(v: float, size: int) -> int:
    return min(size - 1, max(0, int(v * size)))


def render(scene: Scene, size: int = 64) -> tuple[np.ndarray, Masks]:
    """(image uint8 (size, size, 3), Masks). A pure function of (scene, size)."""
    bg = scene.background
    img = R.background_image(bg.kind, COLOURS[bg.colour], BACKGROUND_ALT[bg.colour], bg.variant, size).copy()
    ids = np.zeros((size, size), np.uint8)
    text_m = np.zeros((size, size), bool)
    postit_m = np.zeros((size, size), bool)
    occ_m = np.zeros((size, size), bool)
    areas = []
    for i, o in enumerate(scene.objects):
        stamp = R.shape_stamp(o.shape, R.quantise_radius(o.radius * size), o.angle)
        box = R.clip_box(_px(o.y, size), _px(o.x, size), stamp.shape[0] // 2, size)
        if box is None:
            areas.append(0)
            continue
        ys, xs, sy, sx = box
        m = stamp[sy, sx]
        areas.append(int(np.count_nonzero(m)))
        reg = img[ys, xs]
        reg[m] = COLOURS[o.colour]
        pat = R.texture_pattern(o.texture, o.texture_variant, size)
        if pat is not None:
            reg[m & pat[ys, xs]] = TEXTURE_SHADE[o.colour]
        ids[ys, xs][m] = i + 1
    for oc in scene.occluders:
        y0, y1 = _px(oc.y0, size), max(_px(oc.y0, size) + 1, int(round(oc.y1 * size)))
        x0, x1 = _px(oc.x0, size), max(_px(oc.x0, size) + 1, int(round(oc.x1 * size)))
        img[y0:y1, x0:x1] = R.background_image("noise", *_OCCLUDER_RGB, oc.variant, size)[y0:y1, x0:x1]
        ids[y0:y1, x0:x1] = 0
        occ_m[y0:y1, x0:x1] = True
    t = scene.text
    if t is not None:
        _draw_text(t, size, img, ids, text_m, postit_m)
    return img, Masks(ids, text_m, postit_m, occ_m, tuple(areas))


def draw_text(img: np.ndarray, t: TextSpec) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Write `t` on a square uint8 image in place, as `render` writes a scene's text: (text mask, post-it mask,
    the (y0, x0, y1, x1) box outside which no pixel changed). Any square image: the typographic attack on CLIP
    images writes on photographs with the renderer that wrote ShapeCLIP's training words."""
    size = img.shape[0]
    if img.ndim != 3 or img.shape[1] != size or img.dtype != np.uint8:
        raise ValueError(f"draw_text: expected a square uint8 (H, W, 3) image, got {img.shape} {img.dtype}")
    ids = np.zeros((size, size), np.uint8)
    text_m = np.zeros((size, size), bool)
    postit_m = np.zeros((size, size), bool)
    box = _draw_text(t, size, img, ids, text_m, postit_m)
    return text_m, postit_m, box


def _draw_text(t: TextSpec, size: int, img: np.ndarray, ids: np.ndarray, text_m: np.ndarray,
               postit_m: np.ndarray) -> tuple[int, int, int, int]:
    pad = max(1, round(size * t.size * 0.2)) if t.postit else 0
    room = size - 2 * pad
    g = R.fitted_glyph(t.word, t.font, max(6, round(t.size * size)), room, room)
    h, w = g.shape
    # Shift rather than clip: the whole word stays legible wherever its centre was asked to be.
    ty = min(max(pad, int(round(t.y * size - h / 2))), size - pad - h)
    tx = min(max(pad, int(round(t.x * size - w / 2))), size - pad - w)
    if t.postit:
        py, px_ = slice(ty - pad, ty + h + pad), slice(tx - pad, tx + w + pad)
        img[py, px_] = POSTIT_RGB
        ids[py, px_] = 0
        postit_m[py, px_] = True
    a = g * np.float32(t.opacity)
    ys, xs = slice(ty, ty + h), slice(tx, tx + w)
    reg = img[ys, xs].astype(np.float32)
    col = np.asarray(COLOURS[t.colour], np.float32)
    img[ys, xs] = np.rint(reg + (col - reg) * a[..., None]).astype(np.uint8)
    text_m[ys, xs] = g >= 0.5
    ids[ys, xs][a >= 0.5] = 0
    # what was touched: the note when there is one (it holds the glyphs), else the glyphs' box
    return (ty - pad, tx - pad, ty + h + pad, tx + w + pad)


# ------------------------------------------------------------------------------------------ batch


def render_batch(scenes: Sequence[Scene], size: int = 64, masks: bool = False) -> dict[str, np.ndarray]:
    """Images and ground truth of `scenes` as arrays; per-object arrays are padded with -1 to the
    largest object count in the batch. masks=True adds "masks" (uint8 id maps), "text_masks" and
    "obj_visible"."""
    n = len(scenes)
    k = max((len(s.objects) for s in scenes), default=1)
    images = np.empty((n, size, size, 3), np.uint8)
    out_masks = np.empty((n, size, size), np.uint8) if masks else None
    out_text = np.empty((n, size, size), bool) if masks else None
    visible = np.full((n, k), -1.0, np.float32)
    obj = {name: np.full((n, k), -1, np.int64) for name in ("obj_shapes", "obj_colours", "obj_sizes", "obj_textures")}
    obj_xy = np.full((n, k, 2), -1.0, np.float32)
    text_present = np.zeros(n, bool)
    text_class = np.full(n, -1, np.int64)
    occluded = np.zeros(n, bool)
    backgrounds = np.empty(n, np.int64)
    bg_kinds = np.empty(n, np.int64)
    shape_index = {s: i for i, s in enumerate(SHAPES)}
    colour_index = {c: i for i, c in enumerate(COLOUR_NAMES)}
    size_index = {s: i for i, s in enumerate(SIZE_NAMES)}
    texture_index = {t: i for i, t in enumerate(TEXTURES)}
    for i, s in enumerate(scenes):
        img, m = render(s, size)
        images[i] = img
        if masks:
            out_masks[i] = m.ids
            out_text[i] = m.text
            visible[i, :len(s.objects)] = m.visible_fraction()
        for j, o in enumerate(s.objects):
            obj["obj_shapes"][i, j] = shape_index[o.shape]
            obj["obj_colours"][i, j] = colour_index[o.colour]
            obj["obj_sizes"][i, j] = size_index[o.size]
            obj["obj_textures"][i, j] = texture_index[o.texture]
            obj_xy[i, j] = (o.x, o.y)
        if s.text is not None:
            text_present[i] = True
            text_class[i] = shape_index.get(s.text.word, -1)
        occluded[i] = bool(s.occluders)
        backgrounds[i] = colour_index[s.background.colour]
        bg_kinds[i] = BACKGROUNDS.index(s.background.kind)
    shapes = obj["obj_shapes"]
    out: dict[str, np.ndarray] = {
        "images": images,
        "labels": shapes[:, 0].copy(),
        "colours": obj["obj_colours"][:, 0].copy(),
        "sizes": obj["obj_sizes"][:, 0].copy(),
        "textures": obj["obj_textures"][:, 0].copy(),
        "positions": obj_xy[:, 0].copy(),
        "n_objects": (shapes >= 0).sum(1),
        "counts": (shapes == shapes[:, :1]).sum(1),  # objects sharing the main object's shape
        "backgrounds": backgrounds,
        "background_kinds": bg_kinds,
        "occluded": occluded,
        "text_present": text_present,
        "text_class": text_class,  # the written word's class index, -1 if not a class name or no text
        **obj,
        "obj_xy": obj_xy,
    }
    if masks:
        out["masks"] = out_masks
        out["text_masks"] = out_text
        out["obj_visible"] = visible  # share of each object's pixels left visible
    return out


def sample_batch(n: int, rng: np.random.Generator | int | None = None,
                 config: ShapeWorldConfig | Mapping[str, Any] | None = None, size: int = 64,
                 masks: bool = False) -> dict[str, np.ndarray]:
    """`n` fresh scenes rendered into a dict of arrays (see `render_batch`)."""
    rng = np.random.default_rng(rng)
    cfg = ShapeWorldConfig.coerce(config)
    return render_batch([sample_scene(cfg, rng) for _ in range(n)], size, masks)


def generate(n: int, seed: int = 0, config: ShapeWorldConfig | Mapping[str, Any] | None = None, size: int = 64,
             masks: bool = True) -> dict[str, np.ndarray]:
    """The first `n` images of world `seed`: the same arrays on every call."""
    return sample_batch(n, np.random.default_rng(seed), config, size, masks)


class ShapeWorld:
    """A seeded world. `scene()` / `sample_batch()` advance its stream; `generate(n)` always restarts it."""

    def __init__(self, seed: int = 0, config: ShapeWorldConfig | Mapping[str, Any] | None = None,
                 size: int = 64) -> None:
        self.seed = seed
        self.config = ShapeWorldConfig.coerce(config)
        self.size = size
        self.rng = np.random.default_rng(seed)

    def scene(self, rng: np.random.Generator | None = None) -> Scene:
        return sample_scene(self.config, rng if rng is not None else self.rng)

    def scenes(self, n: int, rng: np.random.Generator | None = None) -> list[Scene]:
        r = rng if rng is not None else self.rng
        return [sample_scene(self.config, r) for _ in range(n)]

    def sample_batch(self, n: int, rng: np.random.Generator | None = None, masks: bool = False,
                     size: int | None = None) -> dict[str, np.ndarray]:
        return render_batch(self.scenes(n, rng), size or self.size, masks)

    def generate(self, n: int, seed: int | None = None, masks: bool = True) -> dict[str, np.ndarray]:
        return generate(n, self.seed if seed is None else seed, self.config, self.size, masks)

    def render(self, scene: Scene) -> tuple[np.ndarray, Masks]:
        return render(scene, self.size)


# ------------------------------------------------------------------------------------ text attacks


def with_text(scene: Scene, word: str, *, font: str = "sans", size: float = 0.22, colour: str | None = None,
              opacity: float = 1.0, position: str | tuple[float, float] = "auto", postit: bool = False) -> Scene:
    """A copy of `scene` with `word` written on it (replacing any text already there).

    position: "auto" (the band covering least of the objects), "center", "top", "bottom", "on-object"
    (over the main object, the classic typographic attack) or an (x, y) centre as fractions.
    colour: default black on a post-it, otherwise black or white, whichever stands out from the background.
    """
    if font not in FONTS:
        raise ValueError(f"with_text: unknown font {font!r}; known: {', '.join(FONTS)}")
    if colour is None:
        colour = "black" if postit or _luma(COLOURS[scene.background.colour]) > 110 else "white"
    if colour not in COLOURS:
        raise ValueError(f"with_text: unknown colour {colour!r}; known: {', '.join(COLOUR_NAMES)}")
    if isinstance(position, tuple):
        x, y = position
    elif position == "auto":
        x, y = auto_text_position(scene, word, size)
    elif position == "on-object":
        x, y = scene.main.x, scene.main.y
    else:
        fixed = {"center": (0.5, 0.5), "top": (0.5, 0.14), "bottom": (0.5, 0.86)}
        if position not in fixed:
            raise ValueError(f"with_text: unknown position {position!r}")
        x, y = fixed[position]
    return dataclasses.replace(scene, text=TextSpec(word, font, size, colour, opacity, x, y, postit))


def without_text(scene: Scene) -> Scene:
    return dataclasses.replace(scene, text=None)


def wrong_label(scene: Scene, rng: np.random.Generator | int | None = None,
                classes: Iterable[str] = SHAPES) -> str:
    """A class name that is not the scene's label (nor any shape in it): the word of a typographic attack."""
    present = {o.shape for o in scene.objects}
    options = [c for c in classes if c not in present] or [c for c in classes if c != scene.main.shape]
    return options[int(np.random.default_rng(rng).integers(len(options)))]
