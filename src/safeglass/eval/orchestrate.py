"""One run from config to judged store: plan, generate (in this process, in local workers, on Ray or as one
torchrun / accelerate rank), merge shards, judge, and hand the finished run to whoever writes its outputs.

The API, the CLI, the worker processes and Ray tasks all come through here; the report is a callback, so the
engine never imports the layers after it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from safeglass.config import RunConfig, load_config, parse_config
from safeglass.eval import runner, scale
from safeglass.eval.crash import Interrupted
from safeglass.eval.plan import Plan, build_plan, check_skipped
from safeglass.eval.store import Store
from safeglass.hashing import content_hash

# Writes a finished run's outputs (summary, samples, report) and returns their paths.
Finisher = Callable[[Path], dict[str, Path]]


def resolve_config(config: str | Path | dict[str, Any] | RunConfig) -> tuple[RunConfig, Path | None]:
    """The RunConfig and the file it came from (None for a dict or a RunConfig)."""
    if isinstance(config, RunConfig):
        return config, None
    if isinstance(config, dict):
        return parse_config(config), None
    return load_config(config), Path(config)


def run(config: str | Path | dict[str, Any] | RunConfig, out: str | Path | None = None, *, limit: int | None = None,
        dry_run: bool = False, workers: int = 1, shard: tuple[int, int] | None = None, judge: bool = True,
        finish: Finisher | None = None, progress: bool = True, backend: str = "process",
        threads: int | None = None, fail_on_skipped: bool = False) -> runner.RunResult:
    """Run (or resume) a config; see ``safeglass.api.run``. ``finish`` writes the outputs of a judged run.
    The result carries the plan it ran (``result.plan``), so callers need not build it again. Ctrl-C raises
    :class:`~safeglass.eval.crash.Interrupted`, which says what this run had finished and saved by then."""
    cfg, config_path = resolve_config(config)
    run_dir = Path(out) if out is not None else Path("runs") / cfg.name
    before = _saved(run_dir)
    try:
        return _run(cfg, config_path, run_dir, limit=limit, dry_run=dry_run, workers=workers, shard=shard,
                    judge=judge, finish=finish, progress=progress, backend=backend, threads=threads,
                    fail_on_skipped=fail_on_skipped)
    except Interrupted:
        raise
    except KeyboardInterrupt as exc:
        raise _interrupted(run_dir, before) from exc


def _saved(run_dir: Path) -> tuple[set[str], int]:
    """The generations (by key, in the store or any shard) and judgments saved in a run directory so far."""
    if not run_dir.exists():
        return set(), 0
    judgments = 0
    if (run_dir / runner.STORE_NAME).exists():  # judging writes to the main store only
        with Store(run_dir / runner.STORE_NAME) as store:
            judgments = store.count("judgments")
    return runner.finished_keys(run_dir), judgments


def _interrupted(run_dir: Path, before: tuple[set[str], int]) -> Interrupted:
    keys, judgments = _saved(run_dir)
    return Interrupted(len(keys - before[0]), max(0, judgments - before[1]))


def _run(cfg: RunConfig, config_path: Path | None, run_dir: Path, *, limit: int | None, dry_run: bool, workers: int,
         shard: tuple[int, int] | None, judge: bool, finish: Finisher | None, progress: bool, backend: str,
         threads: int | None, fail_on_skipped: bool) -> runner.RunResult:
    plan = build_plan(cfg, limit)  # loads datasets once; never loads a model
    check_skipped(plan, fail_on_skipped)
    if threads is not None and not (workers > 1 and shard is None):
        scale.set_threads(threads)
    dist = scale.distributed_rank()
    coordinated = shard is None and dist is not None  # torchrun / accelerate: rank 0 merges
    if coordinated:
        shard = dist
    if workers > 1 and shard is None and not dry_run:
        result = _run_workers(cfg, plan, config_path, run_dir, workers, limit, progress, backend, threads)
        result.outputs, result.judge_failed = finish_run(cfg, plan, run_dir, judge, finish, progress, merge=True)
        return result
    rank, world = shard or (0, 1)
    if world > 1:
        scale.pin_local_gpu()
    result = runner.generate(cfg, run_dir, limit=limit, dry_run=dry_run, rank=rank, world=world,
                             progress=progress, plan=plan)
    result.plan = plan
    if dry_run:
        # Upper bound: judgments already stored for finished generations are skipped at run time.
        result.calls["judge"] = len(cfg.readers) * result.planned
        return result
    if config_path is not None:
        write_config(cfg, run_dir / "config.yaml")
    if world > 1:
        plan_hash = content_hash(sorted(it.key for it in plan.items))
        scale.mark_shard_complete(run_dir, rank, world, plan_hash)
        if rank != 0 or not coordinated:
            return result  # explicit --shard workers stop here; whoever launched them merges
        scale.wait_for_shards(run_dir, world, plan_hash)
        result.outputs, result.judge_failed = finish_run(cfg, plan, run_dir, judge, finish, progress, merge=True)
        return result
    result.outputs, result.judge_failed = finish_run(cfg, plan, run_dir, judge, finish, progress, merge=False)
    return result


def _run_workers(cfg: RunConfig, plan: Plan, config_path: Path | None, run_dir: Path, workers: int,
                 limit: int | None, progress: bool, backend: str, threads: int | None) -> runner.RunResult:
    if config_path is None:
        config_path = run_dir / "config.yaml"
        write_config(cfg, config_path)
    keys = {it.key for it in plan.items}
    before = len(keys & runner.finished_keys(run_dir)) if run_dir.exists() else 0
    if backend == "ray":
        scale.run_ray_workers(config_path, run_dir, workers, limit, shard_run, threads)
    else:
        scale.run_local_workers(config_path, run_dir, workers, limit, progress, threads)
    result = runner.RunResult(run_dir, planned=len(plan.items), done_before=before, plan=plan)
    finished = keys & runner.finished_keys(run_dir)
    result.generated = len(finished) - before
    result.failed = len(keys) - len(finished)
    return result


def shard_run(config_path: str | Path, run_dir: str | Path, limit: int | None, rank: int, world: int,
              progress: bool = False, threads: int | None = None) -> runner.RunResult:
    """One worker's shard: generate only, no judging and no outputs (whoever launched the workers merges)."""
    return run(config_path, out=run_dir, limit=limit, shard=(rank, world), judge=False, progress=progress,
               threads=threads)


def write_config(cfg: RunConfig, path: Path) -> None:
    """A copy of the config that reads its relative paths where the original did (``base_dir``), wherever
    the copy lies: workers and later re-judging load it from the run directory."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.raw_with_base_dir(), sort_keys=False), encoding="utf-8")


def finish_run(cfg: RunConfig, plan: Plan, run_dir: Path, judge: bool, finish: Finisher | None, progress: bool, *,
               merge: bool) -> tuple[dict[str, Path], int]:
    """Merge shards, judge, write the outputs; returns the outputs and the number of judgments that failed."""
    if merge:
        runner.merge_shards(run_dir)
        with Store(run_dir / runner.STORE_NAME) as store:  # meta lives in shards until the first merge
            runner.write_run_meta(store, cfg, plan)
            _copy_target_meta(run_dir, store)
    failed = runner.judge(run_dir, cfg.readers, progress=progress).failed if judge else 0
    return (finish(run_dir) if finish is not None else {}), failed


def _copy_target_meta(run_dir: Path, store: Store) -> None:
    for p in sorted((run_dir / runner.SHARD_DIR).glob("shard-*.sqlite")):
        with Store(p) as shard:
            for (k, v) in shard.conn.execute("SELECT k, v FROM meta WHERE k LIKE 'target_%'"):
                store.conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (k, v))


def rejudge(run_dir: str | Path, judges: list[str] | None = None, *, progress: bool = True) -> runner.JudgeResult:
    """(Re-)judge a run's stored generations with the run's judges or the ones named."""
    run_dir = Path(run_dir)
    with Store(runner.run_store(run_dir)) as store:
        raw = store.get_meta("config")
    if raw is None:
        raise FileNotFoundError(f"{run_dir}: no run found here (its {runner.STORE_NAME} holds no config)")
    if judges:
        # Only the named judges are parsed; the run's primary judge, which names one of its own judges for the
        # report, is not re-checked against them (the stored config is left as it was).
        raw = {k: v for k, v in raw.items() if k != "primary_judge"} | {"judges": judges}
    cfg = parse_config(raw, source=str(run_dir / "config.yaml"))
    before = _saved(run_dir)
    try:
        return runner.judge(run_dir, cfg.judges if judges else cfg.readers, progress=progress)
    except KeyboardInterrupt as exc:
        raise _interrupted(run_dir, before) from exc
