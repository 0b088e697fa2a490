"""The machine: cores, whether the CPU computes bfloat16 natively, the dtype ``auto`` stands for, and a
description of it for results. A kernel module (nothing of safeglass imported): config keys, targets, the
runner, reports and benches all ask the same questions here.

Speeds, and in reduced precision outputs, depend on these facts. On a CPU without native bfloat16 (no
AVX512-BF16 and no AMX; torch then reports AVX2 at most) torch emulates bfloat16, and a bfloat16 matmul runs
at about 2 GFLOP/s against about 200 for float32 (measured on a 2-core Xeon with torch restricted to AVX2),
so ``dtype: auto`` takes float32 there and bfloat16 only where it is native or on a GPU.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

DTYPES = ("auto", "float32", "bfloat16", "float16")
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively for torch: AVX512-BF16 or AMX in the CPU's flags (ARM: the
    bf16 feature), unless torch is held below AVX512 (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``), as one
    does to stand in for an older CPU. Read without importing torch, so config keys can use it."""
    cap = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").lower()
    if (cap and cap != "default" and not cap.startswith("avx512")) or (isa and isa != "all" and "avx512_core_bf16"
                                                                          not in isa and "amx" not in isa):
        return False
    flags = _cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16", "bf16"} & flags)
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return True  # Apple M2 and later; M1 emulates, and is slow either way
    return False


def resolve_dtype(dtype: str | None, device: str | None = "cpu") -> str:
    """The dtype ``auto`` (or an unset dtype) stands for on this machine: bfloat16 on a GPU or a CPU with native
    bfloat16, float32 elsewhere. Other names are returned as they are (checked)."""
    name = ALIASES.get(dtype or "auto", dtype or "auto")
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}")
    if name != "auto":
        return name
    dev = str(device or "cpu")
    if dev.startswith(("cuda", "xpu")):
        return "bfloat16"
    if dev == "mps":
        return "float16"
    return "bfloat16" if native_bf16() else "float32"


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
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": flags.get("cpu_name") or platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16(),
            "amx": bool(flags.get("amx_tile")), "cores": cpu_cores(), "torch_threads": torch.get_num_threads(),
            "gpu": gpu}


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line naming the machine, for tables and bench output."""
    m = info or machine_info()
    bf16 = "native bfloat16" + (" (AMX)" if m.get("amx") else "") if m.get("native_bf16") else "no native bfloat16"
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    return (f"{m.get('cpu')}, {m.get('cores')} cores, torch CPU capability {m.get('cpu_capability')}, {bf16}, "
            f"{m.get('torch_threads')} torch threads{gpu}")


def distinct_machines(infos: Iterable[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The different machines among recorded descriptions (None: not recorded), in first-seen order.
    Descriptions that differ only in torch's thread count (a run resumed with other ``--workers`` or ``--threads``
    on the same machine) are one machine, with its thread counts joined ("1, 2")."""
    found: dict[str, dict[str, Any]] = {}
    threads: dict[str, list[str]] = {}
    for info in infos:
        if not isinstance(info, dict):
            continue
        ident = json.dumps({k: v for k, v in info.items() if k != "torch_threads"}, sort_keys=True, default=str)
        found.setdefault(ident, dict(info))
        n = str(info.get("torch_threads"))
        if n not in threads.setdefault(ident, []):
            threads[ident].append(n)
    return [{**m, "torch_threads": ", ".join(threads[i])} if len(threads[i]) > 1 else m for i, m in found.items()]


if __name__ == "__main__":  # python -m safeglass.machine: what this machine is, and what dtype auto means here
    print(machine_line())
    print(f"dtype auto on the CPU: {resolve_dtype('auto')}")
