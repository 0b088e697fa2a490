"""A run killed with SIGKILL at any moment, and runs split over worker processes, end with exactly
the results of one uninterrupted single-process run."""

import os
import random
import signal
import subprocess
import sys

import pytest
import yaml
from conftest import store_snapshot, subprocess_env

from safeglass.eval.store import Store

N = 150  # samples; x2 defenses = 300 generations


def write_config(path, delay_s: float) -> None:
    path.write_text(yaml.safe_dump({
        "name": "resume",
        "seed": 1,
        "targets": [{"name": "sgtest_components:HeedsSystemPrompt", "id": "heeds", "args": {"delay_s": delay_s}}],
        "datasets": [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": N}}],
        "defenses": ["none", "safety_prompt"],
        "judges": [{"name": "sgtest_components:PrefixRefusalJudge", "id": "prefix"}],
        "chunk_size": 4,
    }))


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "safeglass", *args]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    write_config(d / "cfg.yaml", 0.0)
    subprocess.run(cli("run", str(d / "cfg.yaml"), "--out", str(d / "run"), "--no-progress", "--no-report"),
                   env=subprocess_env(), check=True)
    gens, judg = store_snapshot(d / "run")
    assert len(gens) == 2 * N and len(judg) == 2 * N
    return gens, judg


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path, reference):
    write_config(tmp_path / "cfg.yaml", 0.02)
    run_dir = tmp_path / "run"
    cmd = cli("run", str(tmp_path / "cfg.yaml"), "--out", str(run_dir), "--no-progress", "--no-report")
    rng = random.Random(0)
    kills = 0
    for _attempt in range(30):
        proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Imports take ~1 s; kill somewhere between start-up and the end of the run.
        try:
            proc.wait(timeout=rng.uniform(0.5, 2.5))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0, proc.stderr.read().decode()
        break
    else:
        pytest.fail("the run never finished")
    assert kills >= 2, "the run finished before it could be killed; slow the target down"
    subprocess.run(cmd, env=subprocess_env(), check=True, stdout=subprocess.DEVNULL)
    assert store_snapshot(run_dir) == reference


@pytest.mark.slow
def test_two_workers_give_the_single_process_result(tmp_path, reference):
    write_config(tmp_path / "cfg.yaml", 0.0)
    run_dir = tmp_path / "run"
    subprocess.run(cli("run", str(tmp_path / "cfg.yaml"), "--out", str(run_dir), "--workers", "2", "--no-progress",
                       "--no-report"), env=subprocess_env(), check=True)
    shards = sorted(p.name for p in (run_dir / "shards").iterdir() if p.suffix == ".sqlite")
    assert shards == ["shard-000-of-002.sqlite", "shard-001-of-002.sqlite"]
    sizes = [Store(run_dir / "shards" / s).count() for s in shards]
    assert sum(sizes) == 2 * N and min(sizes) > N // 2  # both workers did a real share
    assert store_snapshot(run_dir) == reference


@pytest.mark.slow
def test_resume_with_a_different_number_of_workers(tmp_path, reference):
    write_config(tmp_path / "cfg.yaml", 0.0)
    run_dir = tmp_path / "run"
    base = cli("run", str(tmp_path / "cfg.yaml"), "--out", str(run_dir), "--no-progress")
    # A 3-worker run of which only worker 0 ran (the others "crashed" before starting) ...
    subprocess.run([*base, "--shard", "0/3"], env=subprocess_env(), check=True)
    with Store(run_dir / "shards" / "shard-000-of-003.sqlite") as s:
        done_by_first = s.count()
    assert 0 < done_by_first < 2 * N
    # ... is finished by a 2-worker run, which must not redo worker 0's items.
    subprocess.run([*base, "--workers", "2", "--no-report"], env=subprocess_env(), check=True)
    made_by_two = 0
    for name in ("shard-000-of-002.sqlite", "shard-001-of-002.sqlite"):
        with Store(run_dir / "shards" / name) as s:
            made_by_two += s.count()
    assert made_by_two == 2 * N - done_by_first
    assert store_snapshot(run_dir) == reference


def test_torchrun_style_ranks_merge_on_rank_zero(tmp_path, reference):
    """Under torchrun / accelerate every rank runs the same command; RANK/WORLD_SIZE pick the shard
    and rank 0 waits for the others, merges, judges and reports."""
    write_config(tmp_path / "cfg.yaml", 0.0)
    run_dir = tmp_path / "run"
    procs = []
    for rank in (1, 0):  # rank 1 first: rank 0 must wait for it either way
        env = subprocess_env() | {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}
        procs.append(subprocess.Popen(cli("run", str(tmp_path / "cfg.yaml"), "--out", str(run_dir), "--no-progress",
                                          "--no-report"), env=env))
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert store_snapshot(run_dir) == reference


def test_workers_own_every_chunk_once_with_balanced_work_per_target(tmp_path):
    from safeglass.config import load_config
    from safeglass.eval.plan import build_plan

    write_config(tmp_path / "cfg.yaml", 0.0)
    plan = build_plan(load_config(tmp_path / "cfg.yaml"))
    whole = {tuple(it.key for it in c) for c in plan.chunks(0, 1)}
    for world in (2, 3):
        shares = [plan.chunks(r, world) for r in range(world)]
        owned = [tuple(it.key for it in c) for share in shares for c in share]
        assert sorted(owned) == sorted(whole)  # every chunk once, cut the same as with one worker
        assert [plan.chunks(r, world) for r in range(world)] == shares  # the same owners every time (resume)
        # within one chunk of each other (owners by the hash of the first key: 120 / 92 / 88 items over 3 workers)
        sizes = [sum(len(c) for c in share) for share in shares]
        assert max(sizes) - min(sizes) <= 4, sizes
