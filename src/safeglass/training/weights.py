"""Weight files that hash the same for the same tensors, and their sha256 (the cards' `weights_sha256`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safeglass.hashing import file_hash


def file_sha256(path: str | Path) -> str:
    return file_hash(str(path), length=64)


def save_safetensors(tensors: Mapping[str, Any], path: str | Path,
                     metadata: Mapping[str, str] | None = None) -> str:
    """Write `tensors` to a safetensors file and return its sha256.

    At most one metadata key: safetensors writes its metadata map in random order, so two keys would make
    the file's hash differ between identical builds."""
    from safetensors.torch import save_file

    meta = dict(metadata) if metadata is not None else {"format": "pt"}
    if len(meta) > 1:
        raise ValueError(f"{path}: one metadata key at most (got {sorted(meta)}); more would not hash the same")
    save_file(dict(tensors), str(path), metadata=meta)
    return file_sha256(path)
