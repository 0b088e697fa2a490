"""The amplification table: one paired bootstrap over per-image statistics serves every task's metric, the
difference from the base model is paired by image, and a killed run resumes from its finished (model, task) parts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT

from safeglass.cli import main
from safeglass.clip import amplify
from safeglass.clip.amplify import TaskScores, compare, mean_reduce
from safeglass.clip.config import load_clip_config, parse_clip_config
from safeglass.schema import ConfigError

TINY = {"name": "amp", "model": {"random": "clip", "seed": 0}, "data": {"n": 20, "seed": 0},
        "templates": ["a photo of a {}"],
        "amplify": {"models": [{"random": "clip", "seed": 1}, {"random": "siglip", "seed": 0}], "resamples": 200}}


def _acc(clean: list[int], attacked: list[int]) -> TaskScores:
    return TaskScores("accuracy", np.array(clean, float)[:, None], np.array(attacked, float)[:, None], mean_reduce)


def test_the_drop_and_its_difference_from_the_base_are_paired_by_image() -> None:
    base = _acc([1] * 10, [1] * 5 + [0] * 5)                 # 100 -> 50: drop 50 points
    robust = _acc([1] * 10, [1] * 3 + [0] * 7)               # 100 -> 30: drop 70 points
    rows = {r["model"]: r for r in compare({"base": base, "robust": robust, "same": base}, "base", 500, 0)}
    assert rows["base"]["drop"]["value"] == 50.0 and rows["robust"]["drop"]["value"] == 70.0
    assert rows["robust"]["amplification"]["value"] == 20.0
    lo, hi = rows["robust"]["amplification"]["ci_low"], rows["robust"]["amplification"]["ci_high"]
    # the two images only the robust model loses are drawn Binomial(10, 0.2) times a resample: 0 to ~5 of them
    assert 0 <= lo < 20 < hi <= 60
    # a model identical to the base differs from it by exactly nothing in every resample (pairing)
    assert rows["same"]["amplification"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert rows["robust"]["relative_drop"]["value"] == 70.0


def test_a_ratio_metric_is_reduced_from_summed_statistics() -> None:
    # mean IoU of two classes from per-image [intersection_0, union_0, intersection_1, union_1]
    def miou(sums, n):
        return (sums[:, 0] / sums[:, 1] + sums[:, 2] / sums[:, 3]) / 2

    clean = np.array([[2, 4, 1, 1], [2, 4, 3, 3]], float)    # class 0: 4/8, class 1: 4/4 -> 0.75
    attacked = np.array([[0, 4, 1, 1], [2, 4, 0, 3]], float)  # class 0: 2/8, class 1: 1/4 -> 0.25
    s = TaskScores("mIoU", clean, attacked, miou)
    assert s.value("clean") == pytest.approx(0.75) and s.value("attacked") == pytest.approx(0.25)
    (row,) = compare({"m": s}, "m", 200, 0)
    assert row["drop"]["value"] == 50.0 and row["drop"]["ci_low"] <= 50.0 <= row["drop"]["ci_high"]


def test_models_scored_on_different_images_are_refused() -> None:
    with pytest.raises(ValueError, match="different image counts"):
        compare({"a": _acc([1, 0], [0, 0]), "b": _acc([1], [0])}, "a")


def test_clip_amplify_writes_the_table_and_resumes_from_finished_parts(tmp_path, capsys, monkeypatch) -> None:
    cfg = tmp_path / "amp.yaml"
    cfg.write_text(json.dumps(TINY))
    out = tmp_path / "out"
    assert main(["clip", "amplify", str(cfg), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "clip-amplify.json").read_text())
    assert result["base"] == "random-clip-0" and result["tasks"] == ["classify"]
    assert [r["model"] for r in result["rows"]["classify"]] == ["random-clip-0", "random-clip-1", "random-siglip-0"]
    assert result["models"]["random-siglip-0"]["family"] == "siglip"
    assert result["config"]["hash"] == parse_clip_config(TINY).hash and "versions" in result
    base_row = result["rows"]["classify"][0]
    assert base_row["amplification"]["value"] == 0.0 and base_row["n"] == 20
    assert "random-clip-1" in printed and "vs base" in printed
    # killed after the parts were written, before the table: the parts are reused, nothing is scored again
    (out / "clip-amplify.json").unlink()
    calls = []
    task = amplify.TASKS["classify"]
    monkeypatch.setitem(amplify.TASKS, "classify", amplify.Task(task.metric, task.reduce,
                                                               lambda *a, **k: calls.append(1) or task.score(*a, **k)))
    again = amplify.amplify(parse_clip_config(TINY), out)
    assert calls == [] and again["rows"] == result["rows"]
    # a model added to the table: only its part is scored
    models = [*TINY["amplify"]["models"], {"random": "clip", "seed": 2}]
    more = {**TINY, "amplify": {**TINY["amplify"], "models": models}}
    (out / "clip-amplify.json").unlink()
    amplify.amplify(parse_clip_config(more), out)
    assert calls == [1]


def test_amplify_config_errors_name_the_field(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"field 'amplify.models\[0\]'"):
        parse_clip_config({**TINY, "amplify": {"models": [{"random": "clip", "hub": "x"}]}})
    with pytest.raises(ConfigError, match="field 'amplify.tasks"):
        parse_clip_config({**TINY, "amplify": {"models": [{"random": "clip"}], "tasks": ["detect"]}})
    with pytest.raises(ConfigError, match="needs an amplify block"):
        amplify.amplify(parse_clip_config({k: v for k, v in TINY.items() if k != "amplify"}), tmp_path)
    with pytest.raises(ValueError, match="listed twice"):
        amplify.amplify(parse_clip_config({**TINY, "amplify": {"models": [{"random": "clip", "seed": 0}]}}), tmp_path)


def test_the_shipped_table_sets_shapeclip_against_its_four_robust_organisms() -> None:
    cfg = load_clip_config(ROOT / "configs" / "clip-amplify-shapeclip.yaml")
    assert cfg.model == {"organism": "shapeclip", "seed": 0}
    assert [amplify.model_label(m) for m in cfg.amplify["models"]] == [
        f"shapeclip-{m}-eps{e}" for m in ("tecoa", "fare") for e in (2, 4)]
    assert cfg.amplify["tasks"] == ["classify", "segment", "vqa"] and cfg.vqa["target"]["name"] == "safesmol-vl"
    demo = load_clip_config(ROOT / "configs" / "clip-amplify-demo.yaml")
    assert demo.amplify["tasks"] == ["classify"] and demo.amplify["models"] == cfg.amplify["models"]
    assert (demo.data, demo.attack, demo.templates) == (cfg.data, cfg.attack, cfg.templates)


def test_a_model_never_right_clean_has_no_relative_drop_and_valid_json() -> None:
    rows = compare({"base": _acc([1, 1, 0, 1], [0, 1, 0, 0]), "blind": _acc([0, 0, 0, 0], [0, 0, 0, 0])}, "base", 100)
    blind = rows[1]
    assert blind["relative_drop"] == {"value": None, "ci_low": None, "ci_high": None}
    assert blind["relative_amplification"]["value"] is None and blind["amplification"]["value"] == -50.0
    json.dumps(rows, allow_nan=False)
