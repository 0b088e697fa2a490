"""Scale-out: split a plan over worker processes, GPUs (torchrun / accelerate ranks) or Ray tasks.

Each worker owns the items whose key hashes to its rank and writes its own shard store; shards merge
by key into the main store. Ownership depends on keys only, and resume reads every shard, so the
merged result is the same for any number of workers and a run can resume with another number.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safeglass.eval.crash import EXIT_CRASH, EXIT_FAILED, EXIT_OK, WorkerCrashed, exit_status
from safeglass.eval.runner import SHARD_DIR, shard_path
from safeglass.eval.store import Store
from safeglass.machine import cpu_cores


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Cores split among local workers: each of N workers gets cores // N threads, at least one. Left alone,
    every worker's torch takes all the cores, and N workers fight over them (measured on 2 cores: 2 workers
    took 2.0x as long as one process for the same generations)."""
    return max(1, (cores or cpu_cores()) // max(1, workers))


def set_threads(n: int) -> None:
    """Run torch (and the OpenMP / MKL pools of libraries that read these variables) on ``n`` threads."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)


def distributed_rank() -> tuple[int, int] | None:
    """(rank, world) when launched by torchrun / accelerate (they set RANK and WORLD_SIZE)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        world = int(os.environ["WORLD_SIZE"])
        if world > 1:
            return int(os.environ["RANK"]), world
    return None


def pin_local_gpu() -> None:
    """Give each rank its own GPU (torchrun sets LOCAL_RANK); a CPU machine is left alone."""
    local = os.environ.get("LOCAL_RANK")
    if local is None or "torch" not in sys.modules:
        return
    torch = sys.modules["torch"]
    if torch.cuda.is_available():
        torch.cuda.set_device(int(local) % torch.cuda.device_count())


def mark_shard_complete(run_dir: Path, rank: int, world: int, plan_hash: str) -> None:
    with Store(shard_path(run_dir, rank, world)) as s:
        s.set_meta("complete", plan_hash)


def wait_for_shards(run_dir: Path, world: int, plan_hash: str, timeout_s: float = 7 * 24 * 3600,
                    poll_s: float = 2.0) -> None:
    """Rank 0 waits until every rank has marked its shard complete for this plan."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = []
        for r in range(world):
            p = shard_path(run_dir, r, world)
            if not p.exists():
                missing.append(r)
                continue
            with Store(p) as s:
                if s.get_meta("complete") != plan_hash:
                    missing.append(r)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"shards of ranks {missing} did not complete in {timeout_s:.0f} s")
        time.sleep(poll_s)


def run_local_workers(config_path: str | Path, run_dir: Path, workers: int, limit: int | None,
                      progress: bool, threads: int | None = None) -> None:
    """Run `workers` CPU/GPU processes on this machine, one shard each, and wait for all of them. Each
    runs torch on ``threads`` threads (default: this machine's cores split among the workers)."""
    (run_dir / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    n_threads = threads or threads_per_worker(workers)
    procs = []
    for rank in range(workers):
        worker_traceback(run_dir, rank, workers).unlink(missing_ok=True)  # an earlier run's crash is not this one's
        cmd = [sys.executable, "-m", "safeglass.eval.worker", str(config_path), "--out", str(run_dir),
               "--shard", f"{rank}/{workers}", "--threads", str(n_threads)]
        if limit is not None:
            cmd += ["--limit", str(limit)]
        if not progress or rank > 0:
            cmd.append("--no-progress")
        procs.append(subprocess.Popen(cmd))
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:  # Ctrl-C reached the workers too; let them stop (a chunk commits whole or not at all)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    # 1: the worker finished but some generations failed (recorded in its shard; the merge and the caller
    # count them). Anything else means the worker itself broke: say why, with its traceback.
    broken = [r for r, c in enumerate(codes) if c not in (EXIT_OK, EXIT_FAILED)]
    if broken:
        first = broken[0]
        path = worker_traceback(run_dir, first, workers)
        report = path.read_text(encoding="utf-8") if path.is_file() else None
        also = (f"; workers {broken[1:]} stopped too (statuses {[codes[r] for r in broken[1:]]}, tracebacks beside "
                f"{path})" if len(broken) > 1 else "")
        raise WorkerCrashed(first, codes[first], report, also, path if report is not None else None)


def worker_traceback(run_dir: str | Path, rank: int, world: int) -> Path:
    """Where a crashed local worker writes its traceback, for the process that launched it to show."""
    return Path(run_dir) / SHARD_DIR / f"worker-{rank:03d}-of-{world:03d}.traceback"


# A shard task whose worker process died (killed, out of memory, a lost node) is run again this many times; it
# resumes from its shard, since chunks commit whole. An exception the shard raised is not retried: the same code on
# the same config raises it again.
RAY_TASK_RETRIES = 3
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ray_task_options(cluster: dict[str, float], threads: int | None) -> dict[str, Any]:
    """Ray options of one shard task: ``threads`` CPUs (Ray then sets OMP_NUM_THREADS to match) and, on a cluster
    with GPUs, one GPU, since a shard loads one copy of the model."""
    options: dict[str, Any] = {"num_cpus": threads or 1, "max_retries": RAY_TASK_RETRIES, "retry_exceptions": False}
    if cluster.get("GPU", 0) >= 1:
        options["num_gpus"] = 1
    return options


def run_ray_workers(config_path: str | Path, run_dir: Path, workers: int, limit: int | None,
                    shard_run: Callable[..., Any], threads: int | None = None) -> None:
    """One Ray task per shard, each running ``shard_run(config_path, run_dir, limit, rank, world, threads=...)`` (the
    orchestrator's, handed in so that this module needs nothing after itself), and wait for all of them.

    ``ray.init()`` joins the cluster ``RAY_ADDRESS`` names, else starts a local one (shut down again at the end);
    a caller that ran ``ray.init(address=...)`` itself keeps its connection. Paths are made absolute, since a task's
    working directory is not the caller's: on a cluster of several machines the run directory and the config must
    be on storage every node mounts at the same path."""
    try:
        import ray
        from ray.exceptions import RayError, RayTaskError
    except ImportError:
        raise RuntimeError("the ray backend needs Ray: pip install 'safeglass[ray]'") from None
    config_path, run_dir = Path(config_path).resolve(), Path(run_dir).resolve()
    (run_dir / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    started = not ray.is_initialized()
    if started:
        ray.init()

    def shard_task(rank: int) -> int:
        shard_run(config_path, run_dir, limit, rank, workers, threads=threads)
        return rank

    for rank in range(workers):
        worker_traceback(run_dir, rank, workers).unlink(missing_ok=True)  # an earlier run's crash is not this one's
    try:
        task = ray.remote(shard_task).options(**ray_task_options(ray.cluster_resources(), threads))
        refs = [task.remote(r) for r in range(workers)]
        crashed: list[tuple[int, int, str]] = []
        try:
            for rank, ref in enumerate(refs):  # wait for every shard, as local workers are waited for
                try:
                    ray.get(ref)
                except RayTaskError as exc:  # the shard raised: its own exception decides the status
                    status = exit_status(exc.cause) if exc.cause is not None else EXIT_CRASH
                    crashed.append((rank, status, ANSI.sub("", str(exc))))  # Ray colours the task's name
                except RayError as exc:  # its worker died more than RAY_TASK_RETRIES times, or the cluster went
                    crashed.append((rank, EXIT_CRASH, f"{type(exc).__name__}: {exc}"))
        except KeyboardInterrupt:  # stop the tasks too: a chunk commits whole or not at all, so a kill loses nothing
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
    if crashed:
        rank, status, report = crashed[0]
        path = worker_traceback(run_dir, rank, workers)  # where the CLI says the worker's traceback is
        path.write_text(report, encoding="utf-8")
        also = (f"; workers {[r for r, _, _ in crashed[1:]]} stopped too" if len(crashed) > 1 else "")
        raise WorkerCrashed(rank, status, report, also, path)

