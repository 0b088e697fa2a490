"""What made a result: library versions, platform and seeds, read without importing heavy packages."""

from __future__ import annotations

import platform
import random
import sys
from importlib import metadata
from typing import Any

TRACKED = ("safeglass", "torch", "transformers", "tokenizers", "accelerate", "safetensors", "numpy", "pillow",
           "gguf")


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in TRACKED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def seed_everything(seed: int) -> dict[str, Any]:
    """Seed Python, NumPy and (if already imported or importable) torch. Returns what was seeded."""
    random.seed(seed)
    seeded = {"python": seed}
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
        seeded["numpy"] = seed
    except ImportError:
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
        seeded["torch"] = seed
    return seeded

