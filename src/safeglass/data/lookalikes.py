"""safeglass's own benign look-alike prompts: requests that sound risky but are harmless.

In the spirit of XSTest: homonyms ("kill a Python process"), figurative language, safe targets,
safe contexts (games, fiction, professional roles), definitions, historical events, public facts
about public figures, fiction and safety information.  A model that refuses these over-refuses.
Written for this project and shipped in ``resources/benign_lookalikes.jsonl`` (id, prompt,
category).

Two disjoint splits: ``card`` (the 186 prompts organism cards and reports are measured on; never used for
tuning) and ``val`` (90 more, 10 per category, for tuning recipes and thresholds). The validation prompts were
written apart from the card's and checked clear of them (no shared normalised text, token overlap below 0.5,
MiniLM cosine below 0.80, at most 0.76) and of SafeSmol's benign training prompts (tests/test_data_lookalikes.py),
so tuning on one does not fit the other.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from safeglass.data.dataset import Dataset
from safeglass.data.errors import DataError, LoadReport
from safeglass.data.generic import FieldMapper
from safeglass.data.records import collect, file_sha256, iter_jsonl, make_dataset, require_path

RESOURCE = "benign_lookalikes.jsonl"
SPLITS = {"card": RESOURCE, "val": "benign_lookalikes_val.jsonl"}


def resource_path(split: str = "card") -> Path:
    if split not in SPLITS:
        raise DataError(f"benign-lookalikes: unknown split {split!r}; known: {', '.join(SPLITS)}")
    return Path(str(resources.files("safeglass.data") / "resources" / SPLITS[split]))


def load_benign_lookalikes(path: str | None = None, limit: int | None = None,
                           categories: str | Sequence[str] | None = None, split: str = "card") -> Dataset:
    """The look-alike prompts of a split (kind "benign"), or those of the given ``categories``.

    Args:
        path: a JSONL file of the same shape (id, prompt, category), read instead of the shipped one.
        categories: the categories to keep (default: all), one name or a list: homonyms, figurative language,
            safe targets, safe contexts, definitions, historical events, public privacy, fiction,
            safety information.
        split: card (the 186 prompts cards and reports are measured on) or val (90 others, for tuning).
    """
    file = require_path(path, "benign-lookalikes") if path is not None else resource_path(split)
    wanted = {categories} if isinstance(categories, str) else set(categories or [])
    mapper = FieldMapper({"text": "prompt", "id": "id", "category": "category"}, default_kind="benign",
                         source="benign-lookalikes")
    report = LoadReport()
    records = ((w, r) for w, r in iter_jsonl(file, report) if not wanted or r.get("category") in wanted)
    samples = collect(records, mapper, file, report, limit)
    if wanted and not samples:
        raise DataError(f"benign-lookalikes: no prompts in categories {sorted(wanted)} ({file})")
    return make_dataset("benign-lookalikes", samples, _provenance(file, path is None, split), report)


def _provenance(file: Path, packaged: bool, split: str = "card") -> dict[str, Any]:
    if not packaged:
        return {"path": str(file), "sha256": file_sha256(file)}
    try:
        version = importlib.metadata.version("safeglass")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        from safeglass.version import __version__ as version
    return {"package": "safeglass", "version": version, "file": f"data/resources/{SPLITS[split]}",
            "sha256": file_sha256(file), **({"split": split} if split != "card" else {})}
