"""Where safeglass keeps what it makes outside a run directory: ``$SAFEGLASS_HOME`` (default
``~/.cache/safeglass``) holds rebuilt organisms, judge calibrations and caches of converted weights."""

from __future__ import annotations

import os
from pathlib import Path


def safeglass_home() -> Path:
    return Path(os.environ.get("SAFEGLASS_HOME") or Path.home() / ".cache" / "safeglass").expanduser()


def cache_dir(kind: str) -> Path:
    """``$SAFEGLASS_HOME/cache/<kind>``: things safe to delete, rebuilt when missing."""
    return safeglass_home() / "cache" / kind


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write `data` to `path` through a temporary file in the same folder, renamed over it: a kill never leaves
    half a file under the final name. The temporary name is the writer's own (process and thread), because
    workers write the same file at the same moment (one attacked image for two targets, one AdaShield-A pool), and
    with a shared name one writer renamed the other's file away."""
    import threading

    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    tmp.replace(path)
    return path
