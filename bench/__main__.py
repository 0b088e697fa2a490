"""Run every benchmark and print a table of figures against the goals of the issues.

    make bench            # or: .venv/bin/python -m bench [--only runner] [--n 32]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench import core


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--only", choices=sorted(core.BENCHES), nargs="+")
    p.add_argument("--n", type=int, default=32, help="prompts per benchmark")
    p.add_argument("--json", type=Path, default=Path("runs/bench/results.json"))
    args = p.parse_args()
    from bench.rows import machine_tag
    from safeglass.machine import machine_info, machine_line

    machine = machine_info()
    tag = machine_tag(machine)
    print(f"machine: {machine_line(machine)} [{tag}]", flush=True)
    results = []
    for name in args.only or sorted(core.BENCHES):
        t0 = time.perf_counter()
        for row in core.BENCHES[name](n=args.n):
            # Each row names its CPU, so a row copied into a table without the header still says where it was made.
            row.setdefault("machine", tag)
            results.append(row)
            print(f"{row['bench']:<34} {row['figure']:>10.3f} {row['unit']:<9} goal {row['goal']:<10} {row['note']} "
                  f"[{row['machine']}]", flush=True)
        print(f"  ({name} took {time.perf_counter() - t0:.0f} s)", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    print(f"written: {args.json}")


if __name__ == "__main__":
    main()
