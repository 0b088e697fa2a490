"""One config reader: relative paths in run, neurons find and neurons eval configs are read against the
config file's folder (older cwd-relative paths still work, with a warning); copies a run makes keep them."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from safeglass.config import ConfigError, load_config, parse_config, resolve_path
from safeglass.eval.orchestrate import write_config


def _jsonl(path, n=3):
    path.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(n)))
    return path


def _run_yaml(folder, data_path):
    cfg = {"targets": ["echo"], "datasets": [{"name": "jsonl", "args": {"path": data_path, "kind": "benign"}}]}
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_config_paths_are_relative_to_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    _jsonl(folder / "data.jsonl")
    cfg = load_config(_run_yaml(folder, "data.jsonl"))
    monkeypatch.chdir(tmp_path)  # elsewhere: the file-relative path still finds it
    assert cfg.datasets[0].args["path"] == str(folder / "data.jsonl")
    from safeglass.eval.plan import build_plan

    assert len(build_plan(cfg).items) == 3
    # the copy a run writes for its workers reads the same file from the run directory
    write_config(cfg, tmp_path / "run" / "config.yaml")
    copy = load_config(tmp_path / "run" / "config.yaml")
    assert copy.datasets[0].args["path"] == str(folder / "data.jsonl") and copy.hash == cfg.hash


def test_an_older_cwd_relative_path_still_works_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    _jsonl(tmp_path / "data.jsonl")
    with caplog.at_level(logging.WARNING, logger="safeglass"):
        cfg = load_config(_run_yaml(tmp_path / "configs", "data.jsonl"))
    assert cfg.datasets[0].args["path"] == "data.jsonl"
    assert "relative to the config file" in caplog.text


def test_a_missing_path_is_named_file_relative_and_hub_ids_stay(tmp_path):
    assert resolve_path("nowhere.jsonl", tmp_path) == str(tmp_path / "nowhere.jsonl")
    assert resolve_path("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path, must_exist=True) == \
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_path("/abs/x", tmp_path) == "/abs/x"
    raw = {"targets": [{"name": "hf-lm", "args": {"model": "org/model"}}], "datasets": ["advbench"]}
    assert parse_config(raw, base_dir=tmp_path).targets[0].args["model"] == "org/model"
    with pytest.raises(ConfigError, match="cfg.yaml: field .typo.: unknown field"):
        p = tmp_path / "cfg.yaml"
        p.write_text("targets: [echo]\ndatasets: [advbench]\ntypo: 1\n")
        load_config(p)


def test_neurons_configs_read_paths_against_their_file(tmp_path, monkeypatch):
    from safeglass.neurons.evaluate import load_eval_config
    from safeglass.neurons.find import load_find_config

    folder = tmp_path / "configs"
    folder.mkdir()
    (tmp_path / "runs" / "exp").mkdir(parents=True)
    (folder / "eval.yaml").write_text(yaml.safe_dump({
        "expertise": "../runs/exp", "target": {"name": "tiny", "args": {"family": "llama"}},
        "methods": [{"method": "sgm", "strength": [0.5]}], "fluency": {"n": 2}}))
    monkeypatch.chdir(tmp_path / "runs")
    cfg = load_eval_config(folder / "eval.yaml")
    assert cfg.expertise.resolve() == (tmp_path / "runs" / "exp").resolve()
    assert cfg.raw["expertise"] == "../runs/exp"  # provenance keeps what the file said
    _jsonl(folder / "lab.jsonl")
    (folder / "find.yaml").write_text(yaml.safe_dump({
        "target": "tiny", "labelled": [{"jsonl": "lab.jsonl", "text": "prompt", "label": "label"}]}))
    find = load_find_config(folder / "find.yaml")
    assert find.base_dir == folder.resolve()
