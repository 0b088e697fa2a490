"""What the bench rows share besides measuring: the machine each row names, the batches a run makes, and the
arithmetic that turns timings into a row's figure. Kept apart from the timing code so that tests check it
without loading a model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

# Variables that hold torch below what the CPU can do; set, a figure is emulated, not this CPU's own.
HOLD_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def machine_tag(info: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> str:
    """The CPU and the ISA torch uses, short enough for every row: "AMD EPYC, AVX2". A row measured with torch held
    below the CPU says so, because such a figure stands in for another CPU rather than being measured on one."""
    from safeglass.machine import machine_info

    m = info if info is not None else machine_info()
    env = os.environ if env is None else env
    tag = f"{m.get('cpu')}, {m.get('cpu_capability')}"
    if m.get("native_bf16"):
        tag += " + native bf16" + (" (AMX)" if m.get("amx") else "")
    if m.get("gpu"):
        tag += f", GPU {m['gpu']}"
    held = [f"{k}={env[k]}" for k in HOLD_VARS if env.get(k)]
    if held:
        tag += f", emulated: torch held by {' '.join(held)}"
    return tag


def outside_model(run_s: float, bare_s: float) -> dict[str, Any]:
    """Time a run spends outside the model: the run's wall time less the bare model loop's over the same batches,
    signed. A negative figure is kept, not clamped to zero: it means the two passes differed by more than the
    runner costs (the machine's other load, warm caches), and a clamped zero would hide that."""
    seconds = run_s - bare_s
    share = seconds / run_s if run_s > 0 else float("nan")
    note = ("" if seconds >= 0 else
            "negative: the run was faster than the bare loop on the same batches, so the runner's cost is below "
            "the noise between two passes")
    return {"seconds": seconds, "share": share, "note": note}


def per_reply(judgments: int, seconds: float, heads: int) -> dict[str, float]:
    """A judging rate in both units: judgments a second (every head counts each reply once) and replies a second
    (all heads done), which is judgments / heads."""
    if heads < 1:
        raise ValueError(f"heads must be at least 1, got {heads}")
    per_s = judgments / seconds if seconds > 0 else float("nan")
    return {"judgments_per_s": per_s, "replies_per_s": per_s / heads, "replies": judgments / heads}


def planned_batches(cfg: dict[str, Any], batch_size: int) -> list[list[Any]]:
    """The work items of run config ``cfg`` in the batches its run hands the model: the plan's chunks
    (:func:`safeglass.eval.plan.chunk_items`, prompts ordered by length), in plan order, each cut at the target's
    batch size as the target's ``generate`` cuts it. A bare loop over these runs the same prompts, in the same
    order and with the same padding, as ``safeglass run`` on ``cfg``."""
    from safeglass.config import parse_config
    from safeglass.eval.plan import build_plan

    plan = build_plan(parse_config(cfg))
    b = max(1, batch_size)
    return [chunk[i:i + b] for chunk in plan.chunks() for i in range(0, len(chunk), b)]


def latency_summary(latencies: list[float], wall_s: float, errors: int) -> dict[str, float]:
    """A load test's figures: latency percentiles p50 / p95 / p99 by nearest rank (a value some request actually
    waited, never an interpolation between two), requests a second over the wall time, and the error count. Every
    request counts, failed ones included (a fast 500 is still a request the server answered)."""
    import math

    if not latencies or wall_s <= 0:
        raise ValueError("a load test needs at least one request and a positive wall time")
    ordered = sorted(latencies)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "requests": len(ordered),
            "per_s": len(ordered) / wall_s, "errors": errors}
