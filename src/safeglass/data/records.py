"""Shared helpers for loaders: read files record by record, map fields, report bad records.

Every loader follows one pattern: a reader yields ``(locator, record)`` pairs ("line 12", "row 7",
"item 3"), a small per-format function turns one record into a :class:`Sample` or raises
:class:`BadRecord`, and :func:`collect` reports the bad ones and keeps going.  Only problems that
stop the whole dataset (a missing or unreadable file, an unknown option) raise :class:`DataError`.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from safeglass.data.dataset import Dataset
from safeglass.data.errors import DataError, LoadReport
from safeglass.hashing import file_hash
from safeglass.types import KINDS, ImageRef, Sample

Record = dict[str, Any]
Located = tuple[str, Any]  # ("line 3", record)

# Benchmark CSVs carry long context strings (HarmBench) that exceed csv's 128 KiB default.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class BadRecord(Exception):
    """One record cannot become a sample; carries the field to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# --- options and paths ------------------------------------------------------------------------------


def check_options(loader: str, options: Mapping[str, Any], allowed: Iterable[str] = ()) -> None:
    """Unknown keyword options are a mistake in a config: fail before reading anything."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise DataError(f"{loader}: unknown option(s) {', '.join(unknown)} (known: {known})")


def require_path(path: str | Path | None, loader: str, what: str = "file") -> Path:
    """The dataset path a path-based loader needs, resolved; DataError if absent."""
    if path is None or str(path) == "":
        raise DataError(f"{loader}: needs path= pointing at the downloaded {what}")
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise DataError(f"{loader}: {p} does not exist")
    return p


def path_provenance(path: Path) -> dict[str, Any]:
    """Absolute path plus content hash of the file (or of each data file under a folder)."""
    path = path.resolve()
    if path.is_file():
        return {"path": str(path), "sha256": _hash(path)}
    return {"path": str(path)}


def _hash(path: Path) -> str:
    try:
        return file_hash(str(path), length=64)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def file_sha256(path: Path) -> str:
    return _hash(path)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DataError(f"dataset file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read dataset file {path}: {exc}") from exc


# --- readers: yield (locator, record) -----------------------------------------------------------------


def iter_jsonl(path: Path, report: LoadReport) -> Iterator[Located]:
    """JSON objects, one a line; a line that is not a JSON object is reported and skipped."""
    # split on "\n" only: str.splitlines would also break at U+2028, which JSON strings may hold raw
    for n, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            report.add(str(path), where, "<json>", f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(rec, dict):
            report.add(str(path), where, "<json>", f"expected a JSON object, got {type(rec).__name__}")
            continue
        yield where, rec


def iter_csv(path: Path, report: LoadReport, delimiter: str = ",",
             comment_prefix: str | None = None) -> Iterator[Located]:
    """Rows as dicts; "row N" counts data rows from 1 (the header is not a row)."""
    text = read_text(path)
    if comment_prefix:
        # PyRIT-style CSVs open with "# dataset_version=..." before the header
        while text.startswith(comment_prefix):
            text = text.partition("\n")[2]
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = reader.fieldnames
    except csv.Error as exc:
        raise DataError(f"cannot parse CSV header of {path}: {exc}") from exc
    if not header:
        raise DataError(f"CSV file {path} is empty (no header row)")
    n = 0
    while True:
        n += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            report.add(str(path), f"row {n}", "<csv>", f"malformed CSV: {exc}")
            continue
        if None in row:  # more cells than header columns
            report.add(str(path), f"row {n}", "<csv>", f"{len(row[None])} cell(s) beyond the header")
            continue
        yield f"row {n}", row


def load_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc


def iter_json_items(path: Path, id_key: str | None = None) -> Iterator[Located]:
    """Items of a JSON array ("item N", from 0) or of an object keyed by id ("item <key>")."""
    data = load_json(path)
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield f"item {i}", item
    elif isinstance(data, dict):
        for key, item in data.items():
            if id_key and isinstance(item, dict) and id_key not in item:
                item = {**item, id_key: key}
            yield f"item {key}", item
    else:
        raise DataError(f"{path}: expected a JSON array or object, got {type(data).__name__}")


# --- field access -------------------------------------------------------------------------------------


def get_field(rec: Mapping[str, Any], name: str) -> Any:
    """A field by name; a dotted name reaches into nested objects ("prompt.text") unless the
    literal key exists, since some published columns contain dots themselves."""
    if name in rec:
        return rec[name]
    cur: Any = rec
    for part in name.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def text_field(rec: Mapping[str, Any], name: str, required: bool = True) -> str | None:
    """A non-empty string field (numbers are accepted as their text)."""
    value = get_field(rec, name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadRecord(name, "missing" if value is None else "empty")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadRecord(name, f"expected a string, got {type(value).__name__}")
    return str(value).strip()


def expect_object(item: Any) -> Record:
    if not isinstance(item, dict):
        raise BadRecord("<item>", f"expected an object, got {type(item).__name__}")
    return item


def to_kind(value: Any, field: str, kind_map: Mapping[Any, str] | None = None) -> str:
    """harmful/benign from a source value, through ``kind_map`` when given."""
    if kind_map:
        for key in (value, str(value), str(value).strip().lower()):
            try:
                if key in kind_map:
                    value = kind_map[key]
                    break
            except TypeError:  # unhashable source value (a list); falls through to the error below
                break
    if isinstance(value, str) and value.strip().lower() in KINDS:
        return value.strip().lower()
    raise BadRecord(field, f"unknown kind {value!r} (expected one of {KINDS}"
                           + (" or a key of kind_map)" if kind_map else ")"))


def image_at(root: Path, rel: Any, field: str) -> ImageRef:
    """ImageRef for a path relative to the dataset folder; a missing file is a record error."""
    if not isinstance(rel, str) or not rel.strip():
        raise BadRecord(field, "missing image path" if rel in (None, "") else
                        f"expected an image path string, got {type(rel).__name__}")
    p = Path(rel.strip())
    full = p if p.is_absolute() else root / p
    if not full.is_file():
        raise BadRecord(field, f"image file not found: {full}")
    return ImageRef(full)


def first_existing(root: Path, rel: str, alternatives: Iterable[Path]) -> Path:
    """The first of root/rel, alt/rel that exists, else root/rel (reported later as missing)."""
    for base in (root, *alternatives):
        if (base / rel).is_file():
            return base
    return root


# --- collecting ---------------------------------------------------------------------------------------


def collect(
    records: Iterable[Located],
    build: Callable[[str, Any], Sample | list[Sample] | None],
    file: Path | str,
    report: LoadReport,
    limit: int | None = None,
) -> list[Sample]:
    """Build samples record by record; bad records (and duplicate ids) go to the report.

    ``build`` may return one sample, several (a record with several image types), or None to skip
    a record on purpose (filtered out by an option).  Stops reading once ``limit`` samples are in.
    """
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, not {limit}")
    samples: list[Sample] = []
    seen: set[str] = set()
    if limit == 0:
        return samples
    for where, rec in records:
        try:
            built = build(where, rec)
        except BadRecord as err:
            report.add(str(file), where, err.field, err.message)
            continue
        for s in [built] if isinstance(built, Sample) else (built or []):
            if s.id in seen:
                report.add(str(file), where, "id", f"duplicate id {s.id!r}")
                continue
            seen.add(s.id)
            samples.append(s)
            if limit is not None and len(samples) >= limit:
                report.loaded = len(samples)
                return samples
    report.loaded = len(samples)
    return samples


def make_dataset(name: str, samples: list[Sample], provenance: dict[str, Any],
                 report: LoadReport) -> Dataset:
    report.loaded = len(samples)
    return Dataset(name, samples, provenance, report)
