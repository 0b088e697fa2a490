"""The clip config kind and its commands: errors name the file and the field, the shipped config parses to its
golden hash, and `safeglass clip eval | defend` write JSON results with provenance (tiny random models here;
configs/clip-shapeclip.yaml is measured in docs/clip.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, subprocess_env
from PIL import Image

from safeglass import api
from safeglass.cli import main
from safeglass.clip.config import load_clip_config, parse_clip_config
from safeglass.schema import ConfigError

SHIPPED = ROOT / "configs" / "clip-shapeclip.yaml"
SHIPPED_HASH = "a0321daad1565858"  # what the shipped config's results are keyed by; a changed default changes it
TINY = {"name": "tiny", "model": {"random": "clip", "seed": 0}, "data": {"n": 24, "seed": 0},
        "templates": ["a photo of a {}"], "defend": {"fit_n": 16, "patience": 2}}


def test_a_config_error_names_the_file_and_field(tmp_path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model: {random: clip}\ndata: {source: folder}\nattack: {opacity: 2, colour: mauve}\n"
                   "templats: ['a {}']\n")
    with pytest.raises(ConfigError) as err:
        load_clip_config(cfg)
    text = str(err.value)
    assert f"{cfg}: field 'attack.opacity'" in text
    assert "field 'templats'" in text and "did you mean 'templates'" in text
    cfg.write_text("model: {random: clip, hub: openai/clip-vit-base-patch32}\ndata: {source: folder}\n"
                   "attack: {colour: mauve, position: on-object}\ntemplates: ['a photo']\n")
    with pytest.raises(ConfigError) as err:
        load_clip_config(cfg)
    text = str(err.value)
    for field in ("model", "data.image_dir", "attack.colour", "attack.position", "templates[0]"):
        assert f"{cfg}: field '{field}'" in text, field


def test_the_shipped_config_parses_to_its_golden_hash() -> None:
    cfg = load_clip_config(SHIPPED)
    assert cfg.model == {"organism": "shapeclip", "seed": 0}
    assert cfg.defend["max_clean_drop_points"] == 1.0 and cfg.data["n"] == 1000
    assert cfg.hash == SHIPPED_HASH
    # what does not change a result does not change the hash
    assert parse_clip_config({**cfg.raw, "batch_size": 7, "name": "x"}).hash == SHIPPED_HASH


def test_clip_eval_writes_json_with_provenance_and_a_table(tmp_path, capsys, monkeypatch) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps(TINY))
    out = tmp_path / "out"
    # in process: the command line as typed, without a second interpreter's start-up on a loaded 2-core machine
    assert main(["clip", "eval", str(cfg), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "clean accuracy" in printed and "SCAM" in printed
    r = json.loads((out / "clip-eval.json").read_text())
    assert r["kind"] == "clip eval" and r["model"]["source"] == "random" and r["model"]["family"] == "clip"
    assert r["config"]["hash"] == load_clip_config(cfg).hash and r["seed"] == 0
    assert {"torch", "transformers", "safeglass"} <= set(r["versions"])
    assert r["dataset"]["source"] == "shapeworld" and r["dataset"]["n"] == 24
    assert r["clean"]["n"] == 24 and r["clean"]["ci_low"] <= r["clean"]["rate"] <= r["clean"]["ci_high"]
    assert r["typographic_drop_points"] == pytest.approx(100 * (r["clean"]["rate"] - r["typographic"]["rate"]),
                                                         abs=0.01)
    assert r["scam"]["n"] == 24 and r["attack"]["word"] == "wrong-class"
    # run again on the same config: the finished result is read back, no model is loaded; another config computes
    import safeglass.clip.run as clip_run

    def no_model(cfg):
        raise AssertionError("a finished clip eval loaded its model again")

    monkeypatch.setattr(clip_run, "_backend", no_model)
    assert main(["clip", "eval", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "clip-eval.json").read_text())["created"] == r["created"]
    cfg.write_text(json.dumps({**TINY, "seed": 1}))
    with pytest.raises(AssertionError, match="loaded its model again"):
        api.clip_eval(cfg, out)
    monkeypatch.undo()
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {random: clip}\nseed: -1\n")
    assert main(["clip", "eval", str(bad), "--out", str(out)]) == 2
    assert f"{bad}: field 'seed'" in capsys.readouterr().err


def test_the_module_entry_point_knows_the_clip_commands() -> None:
    done = subprocess.run([sys.executable, "-m", "safeglass", "clip", "defend", "--help"], capture_output=True,
                          text=True, env=subprocess_env(), timeout=300)
    assert done.returncode == 0 and "clip-defend.json" in done.stdout


def test_clip_defend_in_python_on_a_folder(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("circle", "star"):
        (tmp_path / "photos" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "photos" / cls /
                                                                                   f"{i}.png")
    raw = {**TINY, "model": {"random": "siglip"}, "data": {"source": "folder", "image_dir": str(tmp_path / "photos"),
                                                           "n": 1000}, "attack": {"position": "top", "postit": True}}
    r = api.clip_defend(raw, tmp_path / "out")
    assert (tmp_path / "out" / "clip-defend.json").is_file()
    assert r["dataset"]["fit"]["n"] == 16 and r["dataset"]["test"]["n"] == 4
    assert np.array(r["head_scores"]).shape == (2, 4)
    assert r["attack"]["mean_postit_area"] > 0
    assert set(r["test"]) == {"clean", "typographic", "clean_ablated", "typographic_ablated"}
    assert r["goal"]["recovered_min"] == 0.5
    with pytest.raises(ConfigError, match="defend.fit_n"):
        api.clip_defend({**raw, "defend": {"fit_n": 20}}, tmp_path / "out2")


def test_the_docs_config_example_parses() -> None:
    import re

    import yaml

    text = (ROOT / "docs" / "clip.md").read_text(encoding="utf-8")
    block = re.search(r"## The config\n\n```yaml\n(.*?)```", text, re.S).group(1)
    cfg = parse_clip_config(yaml.safe_load(block), "docs/clip.md")
    assert cfg.model["hub"] == "openai/clip-vit-base-patch32" and cfg.data["source"] == "folder"
    assert cfg.defend["fit_n"] == 500
