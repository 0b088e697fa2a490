"""What made a result: library versions, platform and seeds, read without importing heavy packages."""

from __future__ import annotations

import os
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


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """The machine a figure was measured on: the CPU's vector capability as torch uses it, whether it computes
    bfloat16 natively (AVX512-BF16 or AMX; without, torch emulates it and bfloat16 runs far slower than
    float32), cores, torch threads and GPU. Speeds and, in reduced precision, outputs depend on these."""
    import torch

    flags: dict[str, Any] = {}
    try:  # private, but the only place torch says what it found; absent on some builds
        flags = dict(torch._C._cpu._get_cpu_capability())
    except Exception:
        flags = {}
    native_bf16 = bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))
    if not flags and platform.machine() in ("arm64", "aarch64"):
        native_bf16 = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": flags.get("cpu_name") or platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16,
            "amx": bool(flags.get("amx_tile")), "cores": cpu_cores(), "torch_threads": torch.get_num_threads(),
            "gpu": gpu}


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line naming the machine, for tables and bench output."""
    m = info or machine_info()
    bf16 = "native bfloat16" + (" (AMX)" if m.get("amx") else "") if m.get("native_bf16") else "no native bfloat16"
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    return (f"{m.get('cpu')}, {m.get('cores')} cores, torch CPU capability {m.get('cpu_capability')}, {bf16}, "
            f"{m.get('torch_threads')} torch threads{gpu}")
