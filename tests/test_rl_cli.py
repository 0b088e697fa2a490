"""`safeglass rl attack` and `safeglass.api.rl_attack`: the shipped config's golden hash, errors naming file and
field, a small run writing its JSON with provenance and its report, and a resumed run redoing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from safeglass import api
from safeglass.cli import main
from safeglass.rl.config import load_rl_config, parse_rl_config
from safeglass.schema import ConfigError

SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "rl-mumimo.yaml"
SHIPPED_HASH = "a7bd152062e5601d"
TRAIN_HASH = "f9a91e1f763dd8ac"  # configs/rl-mumimo-train.yaml: the same suite, the victim trained first

SMALL = {"name": "rl-small", "attacks": ["none", "greedy", "fggm"],
         "fggm": {"steps": 10, "starts": 1, "samples": 500, "box_ks": [0.5, 0.25]},
         "eval": {"seeds": [1, 2], "horizon": 40}}


def test_the_shipped_config_parses_to_its_golden_hash():
    cfg = load_rl_config(SHIPPED)
    assert cfg.hash == SHIPPED_HASH
    assert parse_rl_config({**cfg.raw, "name": "x", "description": "y"}).hash == SHIPPED_HASH
    assert parse_rl_config({**cfg.raw, "seed": 1}).hash != SHIPPED_HASH
    train = load_rl_config(SHIPPED.with_name("rl-mumimo-train.yaml"))
    assert train.hash == TRAIN_HASH and train.victim == {"train": {"steps": 20000, "seed": 0}}


def test_config_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"attacks": ["none", "fgsm"]}))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*attacks"):
        load_rl_config(bad)
    with pytest.raises(ConfigError, match="victim"):
        parse_rl_config({"victim": {"packaged": "mumimo-dqn", "path": "x"}})
    with pytest.raises(ConfigError, match="none"):
        parse_rl_config({"attacks": ["greedy"]})


def test_cli_runs_writes_provenance_and_resumes(tmp_path, capsys):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / "out"
    assert main(["rl", "attack", str(cfg), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "greedy" in printed.out and "rl attack: [1/6]" in printed.err
    result = json.loads((out / "rl-attack.json").read_text())
    assert result["config_hash"] == load_rl_config(cfg).hash and result["seed"] == 0
    assert result["victim"]["weights_sha"] and result["versions"]["torch"]
    s = result["summary"]
    assert s["none"]["reduction"] == 0.0 and s["greedy"]["reduction"] > 0.2
    assert len(s["fggm"]["reduction_per_seed"]) == 2
    html = (out / "rl-report.html").read_text()
    assert html.count("<svg") >= 5 and "CROWN width" in html
    # resumed: nothing is run again and the same result comes back
    again = api.rl_attack(cfg, out, progress=(lines := []).append)
    assert any("6 episodes done, 0 to run" in x for x in lines)
    assert again["summary"] == s
    # an interrupted run's cut line and a missing episode: only that one runs again
    lines = (out / "episodes.jsonl").read_text().splitlines()
    (out / "episodes.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:30] + "\n")
    api.rl_attack(cfg, out, progress=(lines2 := []).append)
    assert any("5 episodes done, 1 to run" in x for x in lines2)


def test_the_demo_config_is_the_shipped_suite_made_shorter() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    demo, full = load_rl_config(root / "rl-demo.yaml"), load_rl_config(root / "rl-mumimo.yaml")
    assert (demo.victim, demo.threat, demo.attacks) == (full.victim, full.threat, full.attacks)
    assert len(demo.eval["seeds"]) * demo.eval["horizon"] < len(full.eval["seeds"]) * full.eval["horizon"]
    assert demo.hash != full.hash
