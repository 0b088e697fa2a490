"""The attack at equal budget, budget curves and persistence summaries; the audit end to end on a tiny model (CLI,
resume, the easy / random / hard split at equal budget) and the unlearn modifier."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from safeglass.align.attack import cheapest_budget, equal_budget_summary, first_step_reaching
from safeglass.align.persistence import returns_at

ROOT = Path(__file__).resolve().parents[1]


def curve(*pairs):
    return [{"step": s, "asr": a} for s, a in pairs]


def test_easy_reaching_randoms_final_success_in_half_the_steps_meets_the_goal():
    curves = {"easy": curve((0, 0.0), (5, 0.3), (10, 0.6), (20, 0.8)),
              "random": curve((0, 0.0), (5, 0.1), (10, 0.3), (20, 0.5)),
              "hard": curve((0, 0.0), (5, 0.0), (10, 0.1), (20, 0.2))}
    s = equal_budget_summary(curves, 20)
    assert s["final_asr"] == {"easy": 0.8, "random": 0.5, "hard": 0.2}
    assert s["easy_steps_to_random_final"] == 10 and s["easy_steps_ratio"] == 0.5 and s["goal_met"]
    curves["easy"] = curve((0, 0.0), (5, 0.1), (10, 0.2), (20, 0.5))
    s = equal_budget_summary(curves, 20)
    assert s["easy_steps_ratio"] == 1.0 and not s["goal_met"]
    curves["random"] = curve((0, 0.0), (20, 0.0))  # random does nothing: no step "reaches" it
    assert equal_budget_summary(curves, 20)["easy_steps_to_random_final"] is None


def test_the_cheapest_budget_is_the_smallest_examples_times_steps():
    curves = {4: curve((0, 0.0), (10, 0.4), (20, 0.6)), 8: curve((0, 0.0), (5, 0.7), (20, 0.9)),
              16: curve((0, 0.0), (5, 0.9))}
    assert cheapest_budget(curves, 0.5) == {"examples": 8, "steps": 5, "examples_x_steps": 40, "asr": 0.7}
    assert cheapest_budget(curves, 0.95) is None
    assert first_step_reaching(curves[4], 0.4) == 10


def test_refusal_returns_at_the_first_probe_back_over_the_level():
    c = curve((0, 0.9), (10, 0.5), (20, 0.05))
    assert returns_at(c, 0.9) == 20 and returns_at(c, 0.99) is None and returns_at(c, 0.4) == 10


def test_the_config_names_file_and_field(tmp_path):
    from safeglass.align.config import load_align_config
    from safeglass.schema import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {tiny: llama}\nattack: {examples: 99, steps: 10, every: 3}\n"
                   "eval: {judges: [keyword-refusal], goal_judge: proxy-refusal}\nmethod: {nme: ga}\n")
    with pytest.raises(ConfigError) as e:
        load_align_config(bad)
    text = str(e.value)
    assert "bad.yaml" in text and "method.nme" in text
    bad.write_text("model: {tiny: llama}\nattack: {examples: 99, steps: 10, every: 3}\n"
                   "eval: {judges: [keyword-refusal], goal_judge: proxy-refusal}\n")
    with pytest.raises(ConfigError) as e:
        load_align_config(bad)
    text = str(e.value)
    assert "attack.examples" in text and "attack.every" in text and "eval.goal_judge" in text


def test_shipped_configs_parse_and_keep_their_hash():
    from safeglass.align.config import load_align_config

    hashes = {name: load_align_config(ROOT / "configs" / f"{name}.yaml").hash
              for name in GOLDEN}
    assert hashes == GOLDEN


def test_openers_enter_the_hash_only_when_set(tmp_path):
    from safeglass.align.config import load_align_config

    base = "model: {tiny: llama}\neval: {judges: [keyword-refusal], goal_judge: keyword-refusal"
    a, b, c = (tmp_path / f"{n}.yaml" for n in "abc")
    a.write_text(base + "}\n")
    b.write_text(base + ", openers: [\"I can't\"]}\n")
    c.write_text(base + ", openers: [\"I won't\"]}\n")
    ha, hb, hc = (load_align_config(p).hash for p in (a, b, c))
    assert len({ha, hb, hc}) == 3
    assert load_align_config(b).eval["openers"] == ["I can't"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(base + ", openers: []}\n")
    with pytest.raises(Exception) as e:
        load_align_config(bad)
    assert "eval.openers" in str(e.value)


def test_configs_differing_in_the_attack_share_data_and_forgetting_but_not_the_rest():
    from safeglass.align.audit import phase_key
    from safeglass.align.config import load_align_config

    main, judged = (load_align_config(ROOT / "configs" / f"{n}.yaml")
                    for n in ("align-safesmol", "align-safesmol-judged"))
    assert main.hash != judged.hash
    assert phase_key(main, "data") == phase_key(judged, "data")
    assert phase_key(main, "forgetting") == phase_key(judged, "forgetting")
    assert phase_key(main, "aligned") != phase_key(judged, "aligned")  # judged: all is another evaluation
    # what forgetting reads does move its key
    import dataclasses

    other = dataclasses.replace(main, method={**main.method, "lr": 0.01})
    assert phase_key(other, "forgetting") != phase_key(main, "forgetting")
    assert phase_key(other, "data") == phase_key(main, "data")


GOLDEN = {"align-safesmol": "86069500609d2449", "align-safesmol-judged": "da244b3e086b7e7d",
          "align-safesmol-margin": "dfabc43a982043d5",
          "align-tiny": "4e81cd884fda7598"}


@pytest.fixture(scope="module")
def tiny_audit(tmp_path_factory):
    import subprocess

    from conftest import subprocess_env

    out = tmp_path_factory.mktemp("align") / "out"
    cmd = [sys.executable, "-m", "safeglass", "align", "audit", str(ROOT / "configs" / "align-tiny.yaml"),
           "--out", str(out), "--save-weights", str(out.parent / "w")]
    first = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    return out, first, cmd


def test_the_tiny_audit_runs_from_the_cli_at_equal_budget(tiny_audit):
    out, first, _ = tiny_audit
    r = json.loads((out / "align-audit.json").read_text())
    assert "align: phase forgetting done" in first.stderr and "attack success" in first.stderr
    assert r["model"]["tiny"] == "llama" and r["config_hash"] and r["versions"]["torch"]
    a = r["attack"]
    assert set(a["curves"]) == {"easy", "random", "hard"}
    # equal budget: every subset has the same examples and the same probes
    assert all(len(r["subsets"][s]) == a["examples"] for s in a["curves"])
    assert {tuple(p["step"] for p in c) for c in a["curves"].values()} == {(0, 4, 8)}
    assert not set(r["subsets"]["easy"]) & set(r["subsets"]["hard"])
    ranking = r["forgetting"]["ranking_easy_to_hard"]
    steps = {e["id"]: e["forgetting_step"] for e in r["forgetting_examples"]}
    assert max(steps[i] for i in r["subsets"]["easy"]) <= min(steps[i] for i in r["subsets"]["hard"])
    assert ranking[:a["examples"]] == r["subsets"]["easy"]
    # the attack works from every subset on this model (margin-judged), and starts from the aligned model
    assert all(c[0]["asr"] == r["aligned"]["asr"] for c in a["curves"].values())
    assert all(c[-1]["asr"] > c[0]["asr"] for c in a["curves"].values())
    assert set(r["baselines"]) == {"rmu", "refusal_prefix"}
    assert r["persistence"]["realign"][0]["asr"] == a["curves"]["easy"][-1]["asr"]
    assert (out.parent / "w" / "adapter_model.safetensors").is_file()
    # the report: the attack curves tabled as the JSON has them, drawn, and the goals' verdicts
    md = (out / "align-report.md").read_text()
    row = "| easy | " + " | ".join(f"{p['asr']:.3f}" for p in a["curves"]["easy"])
    assert row in md and "](plots/align-attack.png)" in md and (out / "plots" / "align-attack.png").is_file()
    assert ("| met |" if r["goals"]["easy_goal_met"] else "| not met |") in md
    assert "data:image/png;base64," in (out / "align-report.html").read_text()


def test_a_rerun_reuses_the_finished_audit_and_else_every_phase(tiny_audit):
    import subprocess

    from conftest import subprocess_env

    out, _, cmd = tiny_audit
    before = json.loads((out / "align-audit.json").read_text())
    # the finished audit of the same config: returned without loading the model
    again = subprocess.run(cmd[:-2], capture_output=True, text=True, env=subprocess_env(), timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "finished audit; reused" in again.stderr and "model loaded" not in again.stderr
    # the result lost (a crash after the last phase): every phase is reused, the same result written again
    (out / "align-audit.json").unlink()
    again = subprocess.run(cmd[:-2], capture_output=True, text=True, env=subprocess_env(), timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "phase forgetting reused" in again.stderr and "done in" not in again.stderr.replace("loaded", "")
    after = json.loads((out / "align-audit.json").read_text())
    assert after["attack"] == before["attack"] and after["forgetting"] == before["forgetting"]
