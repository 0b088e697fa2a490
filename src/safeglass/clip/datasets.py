"""Typographic datasets read from local paths (no hub), as `ImageSet`s with each image's attack word:

- RTA-100 and PAINT's typographic set: image files named `label=<object>_text=<attack word>.png` (underscores in a
  name read as spaces). A file whose name does not parse is skipped with a message naming it; the rest load.
- SCAM / NoSCAM / SynthSCAM: the HF dataset's rows (`type`, `image`, `object_label`, `attack_word`,
  `postit_area_pct`) from a folder of images with `metadata.jsonl` / `metadata.csv` (`file_name` column, the HF
  imagefolder layout), from `*.parquet` files or from a `save_to_disk` folder (the last two need pyarrow).
- `typo_copy`: an ImageNet-typo style attacked copy of any folder of class subfolders, written in RTA-100's naming
  (so it loads back with `rta100`) with a manifest of each image's word, box and post-it area.

The classes of RTA-100 / PAINT are the object labels and the attack words together (each word is a candidate the
model can be pulled to), sorted; SCAM's are its object labels and attack words likewise.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.clip.images import IMAGE_SUFFIXES, ImageSet, square

NAMED_SOURCES = ("rta100", "paint-typo")     # the file name carries label and word
SCAM_SOURCE = "scam"
ATTACKED_SOURCES = (*NAMED_SOURCES, SCAM_SOURCE)
SCAM_TYPES = ("SCAM", "NoSCAM", "SynthSCAM")
NAME_RE = re.compile(r"^label=(?P<label>.+?)_text=(?P<word>.+)$")


class DatasetError(ValueError):
    """A dataset that cannot be read at all (a bad single file is skipped instead)."""


def _words(s: str) -> str:
    return s.replace("_", " ").strip()


def parse_name(path: Path) -> tuple[str, str]:
    """(object label, attack word) from `label=<object>_text=<word>.<ext>`; a ValueError names the file."""
    m = NAME_RE.match(path.stem)
    if m is None or not _words(m["label"]) or not _words(m["word"]):
        raise ValueError(f"{path}: expected a name like label=<object>_text=<attack word>{path.suffix or '.png'}")
    return _words(m["label"]), _words(m["word"])


def _subset(n_all: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or limit >= n_all:
        return np.arange(n_all)
    return np.sort(np.random.default_rng(seed).choice(n_all, limit, replace=False))


def named_files(path: str | Path, image_size: int, source: str = "rta100", limit: int | None = None,
                seed: int = 0, warn: Callable[[str], None] | None = None) -> ImageSet:
    """RTA-100 / PAINT: every image under `path` (recursively) named `label=<object>_text=<word>`. Files whose name
    does not parse are skipped, each reported through `warn` and listed in `meta['skipped']`."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{source}: folder {root} does not exist")
    parsed, skipped = [], []
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            parsed.append((f, *parse_name(f)))
        except ValueError as exc:
            skipped.append(str(exc))
            if warn is not None:
                warn(f"{source}: skipped {exc}")
    if not parsed:
        raise DatasetError(f"{source}: no image under {root} is named label=<object>_text=<attack word>.png "
                           f"({len(skipped)} skipped)")
    parsed = [parsed[i] for i in _subset(len(parsed), limit, seed)]
    classes = tuple(sorted({lab for _, lab, _ in parsed} | {w for _, _, w in parsed}))
    images = np.stack([square(f, image_size) for f, _, _ in parsed])
    return ImageSet(images, np.array([classes.index(lab) for _, lab, _ in parsed], np.int64), classes, None,
                    {"source": source, "path": str(root), "n": len(parsed), "seed": seed, "image_size": image_size,
                     "skipped": skipped},
                    words=tuple(w for _, _, w in parsed), postit_area=np.full(len(parsed), np.nan),
                    files=tuple(str(f.relative_to(root)) for f, _, _ in parsed))


# ---------------------------------------------------------------------------------------------------- SCAM


@dataclass(frozen=True)
class Row:
    key: str                    # pairs a SCAM image with its NoSCAM twin: the `id` column, else the file stem
    type: str
    object_label: str
    attack_word: str
    postit_area_pct: float
    image: Any                  # a path or encoded bytes
    file: str


def _image_field(v: Any, base: Path) -> tuple[Any, str]:
    """An HF Image cell ({'bytes', 'path'}), a path string or raw bytes -> (path or bytes, name)."""
    if isinstance(v, dict):
        if v.get("bytes"):
            return bytes(v["bytes"]), str(v.get("path") or "")
        v = v.get("path")
    if isinstance(v, bytes | bytearray):
        return bytes(v), ""
    if isinstance(v, str) and v:
        return base / v, v
    raise ValueError(f"no image in {str(v)[:60]!r}")


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _row(rec: dict[str, Any], base: Path, where: str) -> Row:
    missing = [k for k in ("type", "object_label", "attack_word") if rec.get(k) in (None, "")]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    image, name = _image_field(rec.get("image", rec.get("file_name")), base)
    key = str(rec["id"]) if rec.get("id") not in (None, "") else Path(name).stem or where
    return Row(key, str(rec["type"]), str(rec["object_label"]).strip(), str(rec["attack_word"]).strip(),
               _float(rec.get("postit_area_pct")), image, name or where)


def _metadata_records(root: Path) -> list[tuple[dict[str, Any], Path, str]]:
    out = []
    for meta in sorted([*root.rglob("metadata.jsonl"), *root.rglob("metadata.csv")]):
        if meta.suffix == ".jsonl":
            lines = meta.read_text(encoding="utf-8").splitlines()
            out += [(json.loads(line), meta.parent, f"{meta}:{i + 1}") for i, line in enumerate(lines) if line.strip()]
        else:
            with meta.open(newline="", encoding="utf-8") as fh:
                out += [(dict(r), meta.parent, f"{meta}:{i + 2}") for i, r in enumerate(csv.DictReader(fh))]
    return out


def _arrow_records(root: Path) -> list[tuple[dict[str, Any], Path, str]]:
    files = sorted(root.rglob("*.parquet")) if root.is_dir() else [root]
    arrows = sorted(root.rglob("*.arrow")) if root.is_dir() else []
    if not files and not arrows:
        return []
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(f"scam: {root} holds parquet / arrow files; reading them needs pyarrow "
                           "(pip install pyarrow), or save the dataset as images with metadata.jsonl") from None
    out = []
    for f in files:
        for i, r in enumerate(pq.read_table(f).to_pylist()):
            out.append((r, f.parent, f"{f}:row {i}"))
    for f in arrows:  # save_to_disk writes Arrow IPC streams
        with pa.memory_map(str(f)) as src:
            table = pa.ipc.open_stream(src).read_all()
        out += [(r, f.parent, f"{f}:row {i}") for i, r in enumerate(table.to_pylist())]
    return out


def scam_rows(path: str | Path, warn: Callable[[str], None] | None = None) -> tuple[list[Row], list[str]]:
    """Every readable row of a local SCAM copy, and the problems of the rows skipped."""
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"scam: {root} does not exist")
    recs = _metadata_records(root) if root.is_dir() else []
    if not recs:
        recs = _arrow_records(root)
    if not recs:
        raise DatasetError(f"scam: {root} has no metadata.jsonl / metadata.csv, parquet or save_to_disk files")
    rows, skipped = [], []
    for rec, base, where in recs:
        try:
            rows.append(_row(rec, base, where))
        except ValueError as exc:
            skipped.append(str(exc))
            if warn is not None:
                warn(f"scam: skipped {exc}")
    return rows, skipped


def _read(image: Any, size: int) -> np.ndarray:
    return square(io.BytesIO(image) if isinstance(image, bytes) else image, size)  # type: ignore[arg-type]


def scam(path: str | Path, image_size: int, type: str = "SCAM", limit: int | None = None, seed: int = 0,
         warn: Callable[[str], None] | None = None) -> tuple[ImageSet, ImageSet | None]:
    """(the rows of `type`, their NoSCAM twins or None): twins share the `id` column (else the file stem); the
    twin set holds only the images that have one, `meta['twin_of']` their index in the first set."""
    if type not in SCAM_TYPES:
        raise DatasetError(f"scam: type {type!r}; known: {', '.join(SCAM_TYPES)}")
    rows, skipped = scam_rows(path, warn)
    chosen = [r for r in rows if r.type == type]
    if not chosen:
        have = sorted({r.type for r in rows})
        raise DatasetError(f"scam: {path} has no rows of type {type} (types: {', '.join(have) or 'none'})")
    ok: list[tuple[Row, np.ndarray]] = []
    for r in (chosen[i] for i in _subset(len(chosen), limit, seed)):
        try:
            ok.append((r, _read(r.image, image_size)))
        except OSError as exc:  # PIL's UnidentifiedImageError is an OSError
            skipped.append(f"{r.file}: unreadable image ({exc})")
            if warn is not None:
                warn(f"scam: skipped {r.file}: unreadable image")
    if not ok:
        raise DatasetError(f"scam: no readable image of type {type} under {path}")
    classes = tuple(sorted({r.object_label for r, _ in ok} | {r.attack_word for r, _ in ok}))
    meta = {"source": SCAM_SOURCE, "type": type, "path": str(path), "n": len(ok), "seed": seed,
            "image_size": image_size, "skipped": skipped}
    main = ImageSet(np.stack([im for _, im in ok]), np.array([classes.index(r.object_label) for r, _ in ok]),
                    classes, None, meta, words=tuple(r.attack_word for r, _ in ok),
                    postit_area=np.array([r.postit_area_pct / 100 for r, _ in ok]),
                    files=tuple(r.file for r, _ in ok))
    if type == "NoSCAM":
        return main, None
    twins = {r.key: r for r in rows if r.type == "NoSCAM"}
    pairs = [(i, twins[r.key]) for i, (r, _) in enumerate(ok) if r.key in twins]
    if not pairs:
        return main, None
    clean = ImageSet(np.stack([_read(t.image, image_size) for _, t in pairs]),
                     main.labels[[i for i, _ in pairs]], classes, None,
                     {**meta, "type": "NoSCAM", "n": len(pairs), "twin_of": [i for i, _ in pairs]},
                     files=tuple(t.file for _, t in pairs))
    return main, clean


def load(source: str, path: str | Path, image_size: int, type: str = "SCAM", limit: int | None = None,
         seed: int = 0, warn: Callable[[str], None] | None = None) -> tuple[ImageSet, ImageSet | None]:
    """(attacked set, clean twins or None) for a `data.source` of ATTACKED_SOURCES."""
    if source in NAMED_SOURCES:
        return named_files(path, image_size, source, limit, seed, warn), None
    if source == SCAM_SOURCE:
        return scam(path, image_size, type, limit, seed, warn)
    raise DatasetError(f"unknown attacked dataset {source!r}; known: {', '.join(ATTACKED_SOURCES)}")


def as_attacked(data: ImageSet) -> Any:
    """The set as the eval's AttackedSet: its words as read; the word's box is not recorded, so the whole image."""
    from safeglass.clip.typography import AttackedSet

    if data.words is None:
        raise DatasetError("as_attacked: the set records no attack words")
    side = data.images.shape[1]
    n = len(data.labels)
    area = data.postit_area if data.postit_area is not None else np.full(n, np.nan)
    return AttackedSet(data.images, list(data.words), [(0, 0, side, side)] * n,
                       np.nan_to_num(area, nan=0.0), np.ones(n))


# --------------------------------------------------------------------------------------- ImageNet-typo copy


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "_", name).strip("_") or "x"


def typo_copy(src: str | Path, out: str | Path, image_size: int, spec: Any, seed: int = 0,
              classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Write an attacked copy of the class-subfolder image folder `src` into `out`: each image square at
    `image_size` with its word written as `spec` (a TypoSpec; `wrong-class` draws another class's name, seeded),
    named `label=<class>_text=<word>.png` in a folder per image (`00000/`, ...), so `rta100` reads it back;
    `out/manifest.jsonl` records each file's word, box and post-it area."""
    from PIL import Image

    from safeglass.clip.images import folder
    from safeglass.clip.typography import attack_set

    data = folder(src, image_size)
    names = tuple(classes) if classes else data.classes
    att = attack_set(data.images, data.labels, names, spec, seed)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (img, y, w) in enumerate(zip(att.images, data.labels, att.words)):
        rel = Path(f"{i:05d}") / f"label={_safe(names[y])}_text={_safe(w)}.png"
        (root / rel).parent.mkdir(exist_ok=True)
        Image.fromarray(img).save(root / rel)
        lines.append(json.dumps({"file": rel.as_posix(), "label": names[y], "word": w,
                                 "box": list(att.boxes[i]), "postit_area": round(float(att.postit_area[i]), 5)}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    info = {"source": str(src), "n": len(lines), "image_size": image_size, "seed": seed, "attack": spec.record(),
            **att.summary()}
    (root / "typo-copy.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info
