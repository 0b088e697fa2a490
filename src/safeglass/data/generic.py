"""Any JSONL or CSV file as a dataset, through a field mapping.

``fields`` maps safeglass's names to the file's columns, over the defaults (text=prompt, id=id,
category=category, kind=label, image=image) key by key; null drops a default::

    load_jsonl("mine.jsonl", fields={"text": "question", "kind": "verdict"},
               kind_map={"unsafe": "harmful", "safe": "benign"})

Targets: ``text`` (required), ``id``, ``category``, ``kind``, ``image`` (a path relative to the
file's folder, or a list of them), ``system`` (a system turn).  A column named in the mapping but
absent from a record falls back to the default (``kind=``, ``category=``, a line/row-based id),
except ``text``, which every record needs.  Dotted names reach into nested objects
(``"prompt.text"`` for RealToxicityPrompts' JSONL).  Columns not mapped go to metadata.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeglass.data.dataset import Dataset
from safeglass.data.errors import DataError, LoadReport
from safeglass.data.records import (
    BadRecord,
    Located,
    collect,
    get_field,
    image_at,
    iter_csv,
    iter_jsonl,
    make_dataset,
    path_provenance,
    require_path,
    text_field,
    to_kind,
)
from safeglass.types import ImageRef, Sample, Turn

DEFAULT_FIELDS: dict[str, str] = {"text": "prompt", "id": "id", "category": "category", "kind": "label",
                                  "image": "image"}
TARGETS = ("text", "id", "category", "kind", "image", "system")


def load_jsonl(path: str | None = None, limit: int | None = None, fields: Mapping[str, str | None] | None = None,
               kind: str = "harmful", kind_map: Mapping[Any, str] | None = None, category: str = "uncategorized",
               image_root: str | None = None, name: str | None = None, metadata: Mapping[str, Any] | None = None,
               task: str | None = None) -> Dataset:
    """A JSONL file, one object a line; bad lines are reported as "line N" and skipped.

    Args:
        path: the JSONL file.
        fields: safeglass name -> the file's field (text, id, category, kind, image, system; dotted names reach
            into nested objects), over the defaults text=prompt, id=id, category=category, kind=label, image=image
            key by key (null drops one).
        kind: kind of records without a kind field: harmful or benign.
        kind_map: the kind field's values -> harmful / benign (e.g. {unsafe: harmful, safe: benign}).
        category: category of records without a category field.
        image_root: folder image paths are relative to (default: the file's folder).
        name: the samples' source name (default: the file stem).
        metadata: extra metadata for every sample.
        task: a task tag for every sample (e.g. continuation).
    """
    file = _file("jsonl", path)
    report = LoadReport()
    return _load(file, iter_jsonl(file, report), report, limit, _Options(fields, kind, kind_map, category,
                                                                         image_root, name, metadata, task))


def load_csv(path: str | None = None, limit: int | None = None, delimiter: str = ",",
             comment_prefix: str | None = None, fields: Mapping[str, str | None] | None = None, kind: str = "harmful",
             kind_map: Mapping[Any, str] | None = None, category: str = "uncategorized", image_root: str | None = None,
             name: str | None = None, metadata: Mapping[str, Any] | None = None, task: str | None = None) -> Dataset:
    """A CSV file with a header row; bad rows are reported as "row N" (data rows, from 1).

    Args:
        path: the CSV file.
        delimiter: the column separator.
        comment_prefix: leading lines starting with it are skipped before the header (e.g. "#" for PyRIT's
            ``# dataset_version=`` line).
        fields: safeglass name -> the file's column (text, id, category, kind, image, system), over the defaults
            text=prompt, id=id, category=category, kind=label, image=image key by key (null drops one).
        kind: kind of rows without a kind column: harmful or benign.
        kind_map: the kind column's values -> harmful / benign.
        category: category of rows without a category column.
        image_root: folder image paths are relative to (default: the file's folder).
        name: the samples' source name (default: the file stem).
        metadata: extra metadata for every sample.
        task: a task tag for every sample (e.g. continuation).
    """
    file = _file("csv", path)
    report = LoadReport()
    return _load(file, iter_csv(file, report, delimiter, comment_prefix), report, limit,
                 _Options(fields, kind, kind_map, category, image_root, name, metadata, task))


@dataclass(frozen=True)
class _Options:
    fields: Mapping[str, str | None] | None
    kind: str
    kind_map: Mapping[Any, str] | None
    category: str
    image_root: str | None
    name: str | None
    metadata: Mapping[str, Any] | None
    task: str | None


def _file(loader: str, path: str | None) -> Path:
    file = require_path(path, loader)
    if not file.is_file():
        raise DataError(f"{loader}: {file} is not a file")
    return file


def _load(file: Path, records: Iterator[Located], report: LoadReport, limit: int | None,
          options: _Options) -> Dataset:
    name = options.name or file.stem
    extra = dict(options.metadata or {})
    if options.task:
        extra["task"] = options.task
    mapper = FieldMapper(
        fields=_fields(options.fields),
        default_kind=options.kind,
        kind_map=options.kind_map,
        default_category=options.category,
        image_root=(file.parent / (options.image_root or "")).resolve(),
        source=name,
        extra=extra,
    )
    samples = collect(records, mapper, file, report, limit)
    return make_dataset(name, samples, path_provenance(file), report)


def _fields(fields: Mapping[str, str | None] | None) -> dict[str, str]:
    """The defaults with the given entries laid over them key by key: ``{text: question}`` still reads ``image``,
    ``category``, ``id`` and ``label`` where the file has them (a mapping that replaced the defaults silently lost
    every record's image and category). An entry set to null drops that default (a ``label`` column that is not a
    kind)."""
    bad = sorted(set(fields or {}) - set(TARGETS))
    if bad:
        raise DataError(f"fields: unknown target(s) {bad}; a mapping goes from {TARGETS} to source columns")
    merged = {**DEFAULT_FIELDS, **(fields or {})}
    if not merged.get("text"):
        raise DataError("fields: needs a 'text' entry naming the prompt column")
    return {k: v for k, v in merged.items() if v}


class FieldMapper:
    """Turns one source record into a Sample according to a field mapping."""

    def __init__(self, fields: dict[str, str], default_kind: str = "harmful",
                 kind_map: Mapping[Any, str] | None = None, default_category: str = "uncategorized",
                 image_root: Path | None = None, source: str = "", extra: Mapping[str, Any] | None = None):
        try:
            self.default_kind = to_kind(default_kind, "kind")
        except BadRecord as err:
            raise DataError(f"option kind: {err.message}") from None
        self.fields = fields
        self.kind_map = kind_map
        self.default_category = default_category
        self.image_root = image_root or Path.cwd()
        self.source = source
        self.extra = dict(extra or {})
        self._mapped = {fields[t].split(".")[0] for t in fields}

    def __call__(self, where: str, rec: Mapping[str, Any]) -> Sample:
        f = self.fields
        text = text_field(rec, f["text"])
        turns = []
        if "system" in f and (system := text_field(rec, f["system"], required=False)):
            turns.append(Turn("system", system))
        turns.append(Turn("user", text, self._images(rec)))
        meta = {k: v for k, v in rec.items() if k not in self._mapped}
        return Sample(id=self._id(where, rec), turns=tuple(turns), kind=self._kind(rec),
                      category=self._category(rec), source=self.source,
                      metadata={**self.extra, **meta, "record": where})

    def _id(self, where: str, rec: Mapping[str, Any]) -> str:
        sid = text_field(rec, self.fields["id"], required=False) if "id" in self.fields else None
        return sid or f"{self.source}-{where.replace(' ', '-')}"

    def _kind(self, rec: Mapping[str, Any]) -> str:
        col = self.fields.get("kind")
        value = get_field(rec, col) if col else None
        if value is None or value == "":
            return self.default_kind
        return to_kind(value, col, self.kind_map)

    def _category(self, rec: Mapping[str, Any]) -> str:
        col = self.fields.get("category")
        return (text_field(rec, col, required=False) if col else None) or self.default_category

    def _images(self, rec: Mapping[str, Any]) -> tuple[ImageRef, ...]:
        col = self.fields.get("image")
        value = get_field(rec, col) if col else None
        if value is None or value == "" or value == []:
            return ()
        values = value if isinstance(value, list) else [value]
        return tuple(image_at(self.image_root, v, col) for v in values)
