"""A local worker process: ``python -m safeglass.eval.worker CONFIG --out DIR --shard R/N [--limit] [--threads]``.

Runs one shard of a plan through the orchestrator and exits with the statuses of
:mod:`safeglass.eval.crash`: 1 when some of its generations failed (recorded in its shard; the launcher merges
and counts them), 3 (2 for a config error) when it crashed, after writing its traceback where the launcher reads
it (:func:`safeglass.eval.scale.worker_traceback`), so that a crash is reported with its cause and not taken for
failed generations. Workers need neither the API nor the CLI.
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("safeglass.worker")


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
    from safeglass.eval.crash import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, describe, exit_status, write_traceback

    try:
        from safeglass.eval.orchestrate import shard_run

        result = shard_run(args.config, args.out, args.limit, int(rank), int(world), progress=not args.no_progress,
                           threads=args.threads)
    except KeyboardInterrupt:  # the launcher was interrupted too and says what was saved
        return EXIT_INTERRUPTED
    except Exception as exc:
        from safeglass.eval.scale import worker_traceback

        path = write_traceback(worker_traceback(args.out, int(rank), int(world)), exc)
        log.error("worker %s crashed: %s (traceback in %s)", args.shard, describe(exc), path)
        return exit_status(exc)
    return EXIT_FAILED if result.failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
