"""Each reply keeps the machine that made it: a run resumed on another CPU is not credited to one machine, and the
report says when a target's replies came from more than one. The machine never enters a result key."""

from __future__ import annotations

import json

import pytest

from safeglass.api import run
from safeglass.eval import runner
from safeglass.eval.store import Store
from safeglass.eval.summary import build_summary
from safeglass.machine import distinct_machines, machine_line


def _machine(cpu: str, bf16: bool, threads: int = 2) -> dict:
    return {"cpu": cpu, "cpu_capability": "AVX512" if bf16 else "AVX2", "native_bf16": bf16, "amx": bf16,
            "cores": 2, "torch_threads": threads, "gpu": None}


CONFIG = {"name": "moved", "targets": ["echo"], "datasets": [{"name": "advbench"}],
          "judges": ["keyword-refusal"], "chunk_size": 2}


def test_a_run_resumed_on_another_machine_keeps_each_replys_machine(tmp_path, monkeypatch) -> None:
    import torch  # noqa: F401  (the runner records the machine where torch is loaded)

    first, second = _machine("Sapphire Rapids", True), _machine("Broadwell", False)
    monkeypatch.setattr(runner, "machine_info", lambda: first)
    a = run(CONFIG, out=tmp_path / "r", limit=4, progress=False)
    monkeypatch.setattr(runner, "machine_info", lambda: second)
    b = run(CONFIG, out=tmp_path / "r", limit=6, progress=False)
    assert (a.generated, b.generated, b.done_before) == (4, 2, 4)  # the keys did not move with the machine
    with Store(tmp_path / "r" / runner.STORE_NAME) as store:
        cpus = sorted(json.loads(g["provenance"])["machine"]["cpu"] for g in store.generations())
    assert cpus == ["Broadwell"] * 2 + ["Sapphire Rapids"] * 4
    summary, _ = build_summary(tmp_path / "r")
    (target,) = summary["targets"]
    assert target["machines"] == [first, second] and target["machine"] == second
    html = (tmp_path / "r" / "report.html").read_text()
    assert "2 machines: " in html and "Sapphire Rapids" in html and "Broadwell" in html


@pytest.mark.parametrize("infos, expected", [
    ([None, None], []),
    ([_machine("A", True, 1), _machine("A", True, 2), _machine("A", True, 1)],
     [{**_machine("A", True), "torch_threads": "1, 2"}]),
    ([_machine("A", True), None, _machine("B", False)], [_machine("A", True), _machine("B", False)]),
])
def test_a_thread_count_alone_is_not_another_machine(infos, expected) -> None:
    assert distinct_machines(infos) == expected
    if expected:
        assert "torch threads" in machine_line(expected[0])
