"""The artifact store: what a run or a command trains is built once per content key, by one process at a time,
and a build that failed or was killed resumes from what it left."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from safeglass.artifacts import (
    CHECKPOINTS,
    MANIFEST,
    ArtifactBuildError,
    artifact_dir,
    build_once,
    read_manifest,
)
from safeglass.hashing import content_hash


def _counted(calls: list[Path]):
    def builder(workdir: Path) -> None:
        calls.append(workdir)
        (workdir / "out.txt").write_text("trained", encoding="utf-8")

    return builder


def test_a_finished_artifact_is_read_back_without_building(tmp_path) -> None:
    calls: list[Path] = []
    payload = {"recipe": "tiny", "steps": 3}
    first = build_once("pools", payload, _counted(calls), tmp_path)
    second = build_once("pools", {"steps": 3, "recipe": "tiny"}, _counted(calls), tmp_path)  # same content
    assert first == second == tmp_path / "pools" / content_hash(payload)
    assert len(calls) == 1 and calls[0].name.endswith(".partial")  # the builder wrote into the partial folder
    assert (first / "out.txt").read_text() == "trained"
    manifest = read_manifest(first)
    assert manifest["key_payload"] == payload and manifest["kind"] == "pools" and manifest["resumed"] is False
    assert manifest["versions"]["safeglass"] and manifest["seconds"] >= 0
    assert not calls[0].exists()  # renamed to the finished folder
    assert build_once("pools", {"recipe": "tiny", "steps": 4}, _counted(calls), tmp_path) != first
    assert len(calls) == 2


def test_the_default_root_is_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SAFEGLASS_HOME", str(tmp_path / "home"))
    folder = build_once("selectors", {"a": 1}, _counted([]), versions={"torch": "9.9"})
    assert folder == tmp_path / "home" / "cache" / "artifacts" / "selectors" / content_hash({"a": 1})
    assert read_manifest(folder)["versions"]["torch"] == "9.9"
    with pytest.raises(ValueError, match="names a folder"):
        artifact_dir("../up", {"a": 1}, tmp_path)


class Interrupted(RuntimeError):
    pass


def _stepwise(log: list[int], fail_at: int | None):
    """Trains 5 steps, checkpointing the step count after each; raises before step `fail_at`."""

    def builder(workdir: Path) -> None:
        ckpt = workdir / CHECKPOINTS / "step.json"
        step = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
        while step < 5:
            if step == fail_at:
                raise Interrupted(f"killed at step {step}")
            log.append(step)
            step += 1
            ckpt.parent.mkdir(exist_ok=True)
            ckpt.write_text(json.dumps({"step": step}))
        (workdir / "weights.txt").write_text(f"steps={step}")

    return builder


def test_a_failed_build_keeps_its_partial_folder_and_the_next_build_resumes(tmp_path) -> None:
    steps: list[int] = []
    with pytest.raises(ArtifactBuildError, match=r"killed at step 3.*is kept and the next build resumes") as err:
        build_once("adapters", {"k": 1}, _stepwise(steps, fail_at=3), tmp_path)
    assert isinstance(err.value.__cause__, Interrupted)
    final = artifact_dir("adapters", {"k": 1}, tmp_path)
    partial = final.with_name(final.name + ".partial")
    assert not final.exists() and json.loads((partial / CHECKPOINTS / "step.json").read_text()) == {"step": 3}
    folder = build_once("adapters", {"k": 1}, _stepwise(steps, fail_at=None), tmp_path)
    assert steps == [0, 1, 2, 3, 4]  # steps 0-2 once, before the failure; the second build began at 3
    assert (folder / "weights.txt").read_text() == "steps=5"
    assert not (folder / CHECKPOINTS).exists() and not partial.exists()  # resume state is not the artifact
    assert read_manifest(folder)["resumed"] is True


def test_a_build_killed_after_its_manifest_is_only_renamed(tmp_path) -> None:
    folder = build_once("pools", {"k": 2}, _counted([]), tmp_path)
    folder.rename(folder.with_name(folder.name + ".partial"))  # as if killed between the manifest and the rename

    def must_not_run(workdir: Path) -> None:
        raise AssertionError("trained again")

    assert build_once("pools", {"k": 2}, must_not_run, tmp_path) == folder and (folder / "out.txt").is_file()


def _race_builder(workdir: Path) -> None:
    import time

    with (workdir.parents[2] / "calls.log").open("a") as f:
        f.write(f"{workdir}\n")
    time.sleep(0.5)  # long enough that the other process arrives while this one builds
    (workdir / "out.txt").write_text("trained", encoding="utf-8")


def _race(root: str, barrier) -> str:
    barrier.wait()
    return str(build_once("race", {"k": 1}, _race_builder, root))


def test_two_processes_racing_build_once(tmp_path) -> None:
    ctx = multiprocessing.get_context("spawn")
    root = tmp_path / "store"
    with ctx.Manager() as manager:
        barrier = manager.Barrier(2)
        with ctx.Pool(2) as pool:
            folders = pool.starmap(_race, [(str(root), barrier)] * 2)
    assert folders[0] == folders[1] and Path(folders[0]).is_dir()
    assert len((tmp_path / "calls.log").read_text().splitlines()) == 1  # the second waited and read
    assert (Path(folders[0]) / "out.txt").read_text() == "trained" and (Path(folders[0]) / MANIFEST).is_file()
