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
