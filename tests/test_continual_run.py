"""The continual config kind, `safeglass continual run | sweep` (resumable per cell), the API, the shipped config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safeglass.continual.config import load_continual_config, parse_continual_config
from safeglass.schema import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TINY = {"name": "tiny", "data": {"source": "digits", "tasks": 2},
        "train": {"epochs": 2, "hidden": 32, "buffer_size": 30, "lr": 0.1, "gdumb_epochs": 5},
        "strategies": ["finetune", "er", "er+gate"], "contamination": {"ratio": 0.5},
        "sweep": {"ratios": [0, 0.5], "seeds": [0, 1]}}


def test_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"strategies\[1\].*did you mean"):
        parse_continual_config({**TINY, "strategies": ["er", "derp"]}, "c.yaml")
    with pytest.raises(ConfigError, match=r"c\.yaml: field 'contamination\.ratio'"):
        parse_continual_config({**TINY, "contamination": {"ratio": 1.5}}, "c.yaml")
    with pytest.raises(ConfigError, match=r"contamination\.per_task.*3 ratios for 2 tasks"):
        parse_continual_config({**TINY, "contamination": {"per_task": [0, 0.5, 1]}}, "c.yaml")
    with pytest.raises(ConfigError, match=r"synthetic\.image_dir"):
        parse_continual_config({**TINY, "synthetic": {"source": "folder"}}, "c.yaml")
    with pytest.raises(ConfigError, match=r"train\.epoch.*did you mean"):
        parse_continual_config({**TINY, "train": {"epoch": 3}}, "c.yaml")


def test_the_hash_ignores_names_and_the_grid() -> None:
    a = parse_continual_config(TINY)
    b = parse_continual_config({**TINY, "name": "other", "threads": 2})
    c = parse_continual_config({**TINY, "train": {**TINY["train"], "lr": 0.2}})
    assert a.hash == b.hash != c.hash


def test_the_shipped_config_parses_with_its_hash() -> None:
    cfg = load_continual_config(CONFIGS / "continual-digits.yaml")
    assert cfg.hash == "4b41d01e5dd391d2"
    assert len([s for s in cfg.strategies if "+" not in s and s != "esrm"]) == 7
    assert len(cfg.sweep["ratios"]) * len(cfg.sweep["seeds"]) == 15
    t2 = load_continual_config(CONFIGS / "continual-digits-t2.yaml")
    assert t2.hash == "e988fbc8568c953c" and t2.synthetic["temperature"] == 2.0
    five = load_continual_config(CONFIGS / "continual-digits-5seeds.yaml")
    assert five.hash == "027178a82b640e9f" and five.keyed == cfg.keyed  # the same cells, two more seeds


def test_run_writes_results_with_provenance_and_plots(tmp_path) -> None:
    from safeglass import api

    lines: list[str] = []
    res = api.continual_run(TINY, tmp_path, progress=lines.append)
    assert set(res["cells"]) == {"finetune", "er", "er+gate"}
    er = res["cells"]["er"]
    assert len(er["matrix"]) == 2 and er["memory"][-1]["synthetic_share"] > 0
    for field in ("model", "data", "synthetic", "config", "seed", "versions"):
        assert field in res
    assert res["synthetic"]["origin"] == "packaged" and res["config"]["hash"]
    assert all(Path(p).is_file() for p in res["plots"].values())
    assert json.loads((tmp_path / "continual-run.json").read_text())["name"] == "tiny"
    assert any("er+gate" in line for line in lines)
    md = (tmp_path / "continual-report.md").read_text()
    assert f"| er | {100 * er['average_accuracy']:.1f} |" in md and "](plots/matrix-er.png)" in md


def test_sweep_is_resumable_per_cell(tmp_path) -> None:
    from safeglass.continual.run import cell_path, sweep, table

    cfg = parse_continual_config(TINY)
    first = sweep(cfg, tmp_path)
    cells = sorted((tmp_path / "cells").glob("*.json"))
    assert len(cells) == 3 * 2 * 2
    stamp = {p: p.stat().st_mtime_ns for p in cells}
    gone = cell_path(tmp_path, "er", 0.5, 1)
    gone.unlink()
    lines: list[str] = []
    again = sweep(cfg, tmp_path, progress=lines.append)
    assert any("(1 computed, 11 reused)" in line for line in lines)
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items() if p != gone)
    assert again["table"] == first["table"]  # the recomputed cell is the same: runs are deterministic by seed
    t = first["table"]["er"]["0.5"]
    assert t["average_accuracy"]["n"] == 2 and t["average_accuracy"]["ci_low"] <= t["average_accuracy"]["mean"]
    m = first["mitigation"]["er+gate"]
    assert m["base"] == "er" and "recovered_at_0.5" in m
    assert first["damage"]["er"]["0"] == 0
    assert Path(first["plots"]["average_accuracy"]).is_file() and Path(first["plots"]["memory"]).is_file()
    assert "er+gate" in table(first)
    # the report pages: the accuracy table's values as the JSON has them, and the plots the sweep drew
    md = (tmp_path / "continual-report.md").read_text()
    a = t["average_accuracy"]
    assert f"{100 * a['mean']:.1f} [{100 * a['ci_low']:.1f}, {100 * a['ci_high']:.1f}]" in md
    assert "](plots/sweep-average_accuracy.png)" in md and "er+gate" in md
    page = (tmp_path / "continual-report.html").read_text()
    assert page.count("data:image/png;base64,") == len(first["plots"])
    # another setting is another cell: nothing is reused
    other = parse_continual_config({**TINY, "train": {**TINY["train"], "lr": 0.2}, "strategies": ["er"],
                                    "sweep": {"ratios": [0.5], "seeds": [0]}})
    lines = []
    sweep(other, tmp_path / "other", progress=lines.append)
    assert any("(1 computed, 0 reused)" in line for line in lines)


def test_the_cli(tmp_path, capsys) -> None:
    import yaml

    from safeglass.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**TINY, "strategies": ["er"], "sweep": {"ratios": [0, 1], "seeds": [0]}}))
    assert main(["continual", "sweep", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "average accuracy" in out and "er" in out
    assert main(["continual", "run", str(path), "--out", str(tmp_path / "run"), "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "continual run"


def test_generated_folder_feeds_a_folder_source(tmp_path) -> None:
    from safeglass import api

    record = api.continual_generate(TINY, tmp_path / "gen", per_class=5, seed=1)
    assert record["images"] == 50 and record["synthetic"]["origin"] == "packaged"
    assert sorted(p.name for p in (tmp_path / "gen").iterdir() if p.is_dir()) == [str(i) for i in range(10)]
    cfg = {**TINY, "data": {"source": "digits", "tasks": 2}, "strategies": ["er"],
           "synthetic": {"source": "folder", "image_dir": str(tmp_path / "gen")}, "contamination": {"ratio": 1.0}}
    res = api.continual_run(cfg, tmp_path / "run")
    assert res["synthetic"]["source"] == "folder" and res["cells"]["er"]["memory"][-1]["synthetic_share"] == 1.0


def test_task_incremental_masks_to_the_task(tmp_path) -> None:
    from safeglass import api

    cfg = {**TINY, "strategies": ["finetune"], "contamination": {"ratio": 0.0}}
    cls = api.continual_run(cfg, tmp_path / "class")["cells"]["finetune"]
    task = api.continual_run({**cfg, "data": {"source": "digits", "tasks": 2, "scenario": "task"}},
                             tmp_path / "task")["cells"]["finetune"]
    # fine-tuning forgets the first task's classes outright when all ten compete, much less when the task is given
    assert cls["matrix"][1][0] < 0.2 < task["matrix"][1][0]
    assert task["average_forgetting"] < cls["average_forgetting"]


def test_the_demo_config_is_part_of_the_shipped_sweep() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    demo = load_continual_config(root / "continual-demo.yaml")
    full = load_continual_config(root / "continual-digits.yaml")
    assert (demo.data, demo.synthetic, demo.train, demo.gate) == (full.data, full.synthetic, full.train, full.gate)
    assert set(demo.strategies) < set(full.strategies) and "derpp+gate" in demo.strategies
    assert set(demo.sweep["ratios"]) <= set(full.sweep["ratios"]) and 0.5 in demo.sweep["ratios"]
