"""The probes behind docs/speed.md's "what was slow" table: generation speed of one target at a dtype and batch
size, and the same with the output projection's contiguous-input hook taken off.

    .venv/bin/python -m scripts.speed_probes smollm2 bfloat16 16        # tokens/s, replies/s, matmul GFLOP/s
    .venv/bin/python -m scripts.speed_probes safesmol-vl bfloat16 16 --without-hook
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        .venv/bin/python -m scripts.speed_probes smollm2 float32 16      # an AVX2-only CPU, emulated
    .venv/bin/python -m scripts.speed_probes smollm2 float32 32 --threads 2   # one process, both cores
    (.venv/bin/python -m scripts.speed_probes smollm2 float32 32 --threads 1 &); \\
        .venv/bin/python -m scripts.speed_probes smollm2 float32 32 --threads 1   # two one-thread processes
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.speed import matmul_gflops
from safeglass.data.packaged import load_advbench
from safeglass.machine import machine_line
from safeglass.registry import registry
from safeglass.types import GenerationParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target")
    ap.add_argument("dtype")
    ap.add_argument("batch", type=int)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--without-hook", action="store_true", help="also time it with the contiguous-input hook off")
    ap.add_argument("--threads", type=int, help="torch threads of this process (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    target = registry("targets").build(args.target, dtype=args.dtype, batch_size=args.batch)
    load = time.perf_counter() - t0
    convs = [s.turns for s in load_advbench(limit=args.prompts).samples]
    params = GenerationParams(max_new_tokens=48)

    def timed() -> tuple[float, list]:
        target.generate(convs[:2], GenerationParams(max_new_tokens=2))  # warm-up
        t0 = time.perf_counter()
        gens = target.generate(convs, params)
        return time.perf_counter() - t0, gens

    dt, gens = timed()
    tokens = sum(g.completion_tokens for g in gens)
    print(f"{args.target} {args.dtype} batch {args.batch}, {torch.get_num_threads()} threads: load {load:.1f} s, "
          f"{tokens / dt:.1f} tokens/s, "
          f"{len(gens) / dt:.2f} replies/s; matmul {matmul_gflops(torch.float32):.0f} GFLOP/s float32, "
          f"{matmul_gflops(torch.bfloat16):.0f} bfloat16; {machine_line()}")
    if args.without_hook:
        target.model.get_output_embeddings()._forward_pre_hooks.clear()
        dt2, gens2 = timed()
        same = sum(a.text == b.text for a, b in zip(gens, gens2))
        print(f"without the hook: {len(gens2) / dt2:.2f} replies/s ({dt2 / dt:.2f}x the time); "
              f"{same} of {len(gens)} replies the same")


if __name__ == "__main__":
    main()
