"""The Ray backend on a real local Ray cluster: `safeglass run --backend ray` pointed at the cluster by RAY_ADDRESS
merges to exactly the single-process result, a shard whose worker process dies mid-run is run again and resumes
without losing or redoing a row, and a shard that raises is reported as a crashed worker."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from conftest import require, store_snapshot, subprocess_env

from safeglass import api
from safeglass.eval.crash import WorkerCrashed
from safeglass.eval.scale import RAY_TASK_RETRIES, ray_task_options
from safeglass.eval.store import Store

N = 40  # samples; x2 defenses = 80 generations in 20 chunks of 4, 10 a worker


def write_config(path, target: str = "sgtest_components:DiesOnce") -> None:
    path.write_text(yaml.safe_dump({
        "name": "ray",
        "seed": 1,
        "targets": [{"name": target, "id": "t"}],
        "datasets": [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": N}}],
        "defenses": ["none", "safety_prompt"],
        "judges": [{"name": "sgtest_components:PrefixRefusalJudge", "id": "prefix"}],
        "chunk_size": 4,
    }))


def shard_sizes(run_dir) -> list[int]:
    return [Store(run_dir / "shards" / f"shard-{r:03d}-of-002.sqlite").count() for r in range(2)]


def made(folder) -> list[str]:
    """Every reply the Ray workers generated, one line each (DiesOnce logs them)."""
    log = folder / "generated.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same config run in this process, one worker, no Ray (DiesOnce never dies here)."""
    d = tmp_path_factory.mktemp("ref")
    write_config(d / "cfg.yaml")
    result = api.run(d / "cfg.yaml", out=d / "run", progress=False, report=False)
    assert (result.generated, result.failed) == (2 * N, 0)
    gens, judg = store_snapshot(d / "run")
    assert len(gens) == 2 * N and len(judg) == 2 * N
    return gens, judg


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, reference):
    """A local Ray cluster of 2 CPUs whose workers import the package and the test components and have
    SGTEST_DIE_DIR set (the cluster's processes keep the environment they were started with; this one gets it
    back at once). Yields (that folder, the cluster's address)."""
    try:
        import ray
    except ImportError:
        ray = None
    require(ray is not None, "ray", "make install installs the [ray] extra")
    folder = tmp_path_factory.mktemp("die")
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "SGTEST_DIE_DIR")}
    os.environ.update(PYTHONPATH=subprocess_env()["PYTHONPATH"], SGTEST_DIE_DIR=str(folder))
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield folder, ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_the_cli_on_an_existing_cluster_gives_the_single_process_result(tmp_path, cluster, reference) -> None:
    folder, address = cluster
    (folder / "died").write_text("no death in this test\n")
    (folder / "generated.log").unlink(missing_ok=True)
    write_config(tmp_path / "cfg.yaml")
    run_dir = tmp_path / "run"
    # Relative paths, from a folder that is not the cluster's: the tasks must still write into this run folder.
    done = subprocess.run([sys.executable, "-m", "safeglass", "run", "cfg.yaml", "--out", "run", "--workers", "2",
                           "--backend", "ray", "--no-progress", "--no-report"], cwd=tmp_path,
                          env=subprocess_env() | {"RAY_ADDRESS": address}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    sizes = shard_sizes(run_dir)
    assert sum(sizes) == 2 * N and min(sizes) >= N // 2  # both tasks did a real share
    # Made on this cluster's workers (only they have SGTEST_DIE_DIR: a cluster the CLI started itself would not log),
    # each reply once.
    assert len(made(folder)) == 2 * N == len(set(made(folder)))
    assert store_snapshot(run_dir) == reference


def test_a_worker_killed_mid_run_is_retried_and_loses_or_repeats_nothing(tmp_path, cluster, reference) -> None:
    folder, _ = cluster
    (folder / "died").unlink(missing_ok=True)
    (folder / "generated.log").unlink(missing_ok=True)
    write_config(tmp_path / "cfg.yaml")
    run_dir = tmp_path / "run"
    result = api.run(tmp_path / "cfg.yaml", out=run_dir, workers=2, backend="ray", progress=False, report=False)
    assert (folder / "died").exists(), "no worker died: the test did not test a retry"
    assert (result.generated, result.failed) == (2 * N, 0)
    assert sum(shard_sizes(run_dir)) == 2 * N
    # The two chunks the dead worker had committed were not made again by its retry, and none was lost.
    assert len(made(folder)) == 2 * N == len(set(made(folder)))
    assert store_snapshot(run_dir) == reference


def test_a_shard_that_raises_is_a_crashed_worker_with_its_traceback(tmp_path, cluster) -> None:
    write_config(tmp_path / "cfg.yaml", target="sgtest_components:CrashingTarget")
    with pytest.raises(WorkerCrashed, match="the device went away") as err:
        api.run(tmp_path / "cfg.yaml", out=tmp_path / "run", workers=2, backend="ray", progress=False, report=False)
    report = err.value.where.read_text()
    assert err.value.status == 3 and "RuntimeError: the device went away" in report and "\x1b[" not in report


def test_task_options_ask_for_the_threads_and_a_gpu_where_the_cluster_has_them() -> None:
    assert ray_task_options({"CPU": 8.0}, None) == {"num_cpus": 1, "max_retries": RAY_TASK_RETRIES,
                                                    "retry_exceptions": False}
    assert ray_task_options({"CPU": 64.0, "GPU": 8.0}, 4) == {"num_cpus": 4, "num_gpus": 1,
                                                              "max_retries": RAY_TASK_RETRIES,
                                                              "retry_exceptions": False}
