"""`safeglass neurons find / apply` and api.find_experts / make_glasses on the tiny llama, with
errors that name the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from safeglass import api
from safeglass.cli import main
from safeglass.neurons.expertise import Expertise
from safeglass.neurons.glasses import Glasses

TOXIC = ["you are a worthless idiot", "I hate you, go away", "shut up, you stupid fool", "everyone like you is trash"]
NEUTRAL = ["the weather is mild today", "I bought fresh bread", "the train leaves at nine", "water boils at 100 C"]



def _write(tmp: Path, config: dict, rows: list[dict] | None = None) -> Path:
    if rows is not None:
        (tmp / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    path = tmp / "neurons.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _labelled_rows() -> list[dict]:
    rows = [{"text": "say something", "reply": t, "label": lab} for t, lab in
            zip(TOXIC + NEUTRAL, ["toxic", 1, True, "1", "non-toxic", 0, False, "benign"])]
    return rows


def _config(**extra) -> dict:
    return {"name": "tiny-find", "target": {"name": "tiny", "args": {"family": "llama"}},
            "labelled": [{"jsonl": "items.jsonl", "text": "text", "response": "reply", "label": "label"}],
            "pooling": "max", "batch_size": 3, "seed": 0, **extra}


def test_find_then_apply(tmp_path, capsys):
    cfg = _write(tmp_path, _config(glasses={"method": "sgm", "strength": 0.8}), _labelled_rows())
    assert main(["neurons", "find", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "4 toxic and 4 non-toxic" in printed and "span response" in printed and "lm.mlp.1" in printed
    assert printed.startswith("recorded ")
    # the same config again reuses the finished recording, and says so rather than "recorded ... in N s"
    assert main(["neurons", "find", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    again = capsys.readouterr().out
    assert again.startswith(f"reused the finished recording in {tmp_path / 'out'}") and "recorded" not in again
    exp = Expertise.load(tmp_path / "out")
    assert exp.auroc.shape == (256,) and exp.provenance["n_toxic"] == 4 and exp.provenance["span"] == "response"
    assert exp.provenance["data"][0]["sha256"] and exp.provenance["target"]["tiny"] == "llama"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [s["site"] for s in summary["expertise"]["per_site"]] == ["lm.mlp.0", "lm.mlp.1"]
    assert sum(summary["expertise"]["histogram"]["counts"]) == 256
    assert summary["expertise"]["experts"] == int((exp.auroc > 0.5).sum())
    default = Glasses.load(tmp_path / "out" / "glasses")
    assert default.method == "sgm" and default.params["strength"] == 0.8
    assert default.hash == Glasses.sgm(exp, strength=0.8).hash
    # apply derives other glasses from the saved expertise alone
    for args, expected in [(["--method", "aura"], Glasses.aura(exp)),
                           (["--method", "det0", "--k", "5"], Glasses.det0(exp, 5)),
                           (["--method", "damp", "--k", "7", "--alpha", "0.3"], Glasses.damp(exp, 7, 0.3)),
                           (["--method", "sgm", "--curve", "square", "--layers", "1"],
                            Glasses.sgm(exp, curve="square", layers=[1]))]:
        out = tmp_path / f"g-{args[1]}"
        assert main(["neurons", "apply", str(tmp_path / "out"), *args, "--out", str(out)]) == 0
        assert Glasses.load(out).hash == expected.hash
    assert "dampened" in capsys.readouterr().out
    assert main(["neurons", "apply", str(tmp_path / "out"), "--method", "sgm", "--k", "3", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "method sgm takes" in capsys.readouterr().err
    # the glasses then go into a target as its modifier (or, in older configs, its glasses argument)
    from safeglass.config import parse_config
    from safeglass.eval.runner import _safe_config, build_target

    worn = {"name": "tiny", "args": {"family": "llama", "glasses": str(tmp_path / "g-aura")}}
    spec = parse_config({"targets": [worn], "datasets": ["benign-lookalikes"]}).targets[0]
    assert _safe_config(build_target(spec))["modifiers"] == [{"name": "glasses", "hash": Glasses.aura(exp).hash}]


def test_api_with_separate_toxic_and_non_toxic_sources(tmp_path):
    (tmp_path / "toxic.jsonl").write_text("".join(json.dumps({"t": t}) + "\n" for t in TOXIC))
    (tmp_path / "calm.jsonl").write_text("".join(json.dumps({"t": t}) + "\n" for t in NEUTRAL))
    cfg = {"target": "tiny", "toxic": [{"jsonl": str(tmp_path / "toxic.jsonl"), "text": "t", "limit": 3}],
           "non_toxic": [{"jsonl": str(tmp_path / "calm.jsonl"), "text": "t"}], "pooling": "mean"}
    res = api.find_experts(cfg, tmp_path / "out", progress=False)
    s = res["summary_data"]
    assert (s["n_toxic"], s["n_non_toxic"], s["span"], s["pooling"]) == (3, 4, "prompt", "mean")
    g = api.make_glasses(tmp_path / "out", "det0", out=tmp_path / "g", k=4)
    assert g.n_dampened == 4 and Glasses.load(tmp_path / "g").hash == g.hash
    exp = Expertise.load(tmp_path / "out")
    assert api.make_glasses(exp, "aura").hash == Glasses.aura(exp).hash
    assert np.isfinite(exp.auroc).all()


@pytest.mark.parametrize("change, message", [
    ({"spna": "response"}, "field 'spna': unknown field (did you mean 'span'?)"),
    ({"span": "middle"}, "field 'span'"),
    ({"pooling": "median"}, "field 'pooling'"),
    ({"batch_size": 0}, "field 'batch_size'"),
    ({"target": {"args": {}}}, "field 'target.name': required"),
    ({"labelled": [{"jsonl": "items.jsonl", "lable": "label"}]},
     "field 'labelled[0].lable': unknown field (did you mean 'label'?)"),
    ({"labelled": [{"jsonl": "missing.jsonl"}]}, "labelled[0]'.jsonl"),
    ({"glasses": {"method": "det0"}}, "field 'glasses': method det0 needs k"),
    ({"labelled": None, "toxic": [{"jsonl": "items.jsonl"}]}, "give toxic and non_toxic"),
])
def test_bad_configs_name_file_and_field(tmp_path, capsys, change, message):
    config = {k: v for k, v in {**_config(), **change}.items() if v is not None}
    cfg = _write(tmp_path, config, _labelled_rows())
    assert main(["neurons", "find", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and message in err
    assert not (tmp_path / "out").exists()


def test_bad_records_name_the_line_and_field(tmp_path, capsys):
    rows = _labelled_rows()
    rows[5]["label"] = "maybe"
    cfg = _write(tmp_path, _config(), rows)
    assert main(["neurons", "find", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "items.jsonl: line 6: field 'label': label 'maybe'" in capsys.readouterr().err
    rows = _labelled_rows()
    del rows[2]["reply"]
    _write(tmp_path, _config(), rows)
    assert main(["neurons", "find", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "line 3: field 'reply' must be a string" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("target: [unclosed")
    assert main(["neurons", "find", str(tmp_path / "broken.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "broken.yaml: invalid YAML" in capsys.readouterr().err
