"""A local worker process: ``python -m safeglass.eval.worker CONFIG --out DIR --shard R/N [--limit] [--threads]``.

Runs one shard of a plan through the orchestrator and exits 1 when some of its generations failed (recorded
in its shard; the launcher merges and counts them), so workers need neither the API nor the CLI.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m safeglass.eval.worker")
    p.add_argument("config")
    p.add_argument("--out", required=True)
    p.add_argument("--shard", required=True, help="RANK/WORLD")
    p.add_argument("--limit", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    rank, _, world = args.shard.partition("/")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from safeglass.eval.orchestrate import shard_run

    result = shard_run(args.config, args.out, args.limit, int(rank), int(world), progress=not args.no_progress,
                       threads=args.threads)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
