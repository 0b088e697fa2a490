"""`safeglass judges calibrate`: metrics vs sklearn, bootstrap intervals, label readers, CLI, store, summary."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, precision_score, recall_score

from safeglass import api
from safeglass.cli import main
from safeglass.judges import calibration_store
from safeglass.judges.base import Judge, JudgeInput, Verdict
from safeglass.judges.calibration import bootstrap_intervals, cohen_kappa, metrics, predicted_labels
from safeglass.judges.keyword import KeywordRefusalJudge
from safeglass.judges.labels import pyrit_dir, read_generic, read_pyrit_csv, resolve_labels

FIX = Path(__file__).parent / "fixtures" / "labels"


class ToxicJudge(Judge):
    name = "always-toxic"
    measure = "toxicity"

    def judge(self, items: list[JudgeInput]) -> list[Verdict]:
        return [Verdict(True, 1.0, "toxic") for _ in items]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFEGLASS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(calibration_store, "SHIPPED_DIR", tmp_path / "shipped")  # an empty project dir
    return tmp_path / "home"


# --- metrics ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    t = rng.random(n) < rng.uniform(0.1, 0.9)
    p = np.where(rng.random(n) < 0.7, t, rng.random(n) < 0.5)  # correlated with the truth, not equal
    m = metrics(t, p)
    assert m["accuracy"] == pytest.approx(accuracy_score(t, p))
    assert m["precision"] == pytest.approx(precision_score(t, p, zero_division=0))
    assert m["recall"] == pytest.approx(recall_score(t, p, zero_division=0))
    assert m["f1"] == pytest.approx(f1_score(t, p, zero_division=0))
    assert m["kappa"] == pytest.approx(cohen_kappa_score(t, p))
    assert cohen_kappa(t, p) == pytest.approx(cohen_kappa_score(t, p))
    assert sum(m["confusion"].values()) == m["n"] == n


def test_metrics_degenerate_cases():
    m = metrics([False, False, False], [False, False, False])
    assert m["accuracy"] == 1.0 and m["precision"] == 0.0 and m["f1"] == 0.0 and np.isnan(m["kappa"])
    assert cohen_kappa([True, False], [False, True]) == pytest.approx(cohen_kappa_score([1, 0], [0, 1]))
    with pytest.raises(ValueError):
        metrics([], [])


def test_bootstrap_contains_point_and_narrows_with_n():
    rng = np.random.default_rng(1)
    widths = []
    for n in (50, 2000):
        t = rng.random(n) < 0.5
        p = np.where(rng.random(n) < 0.8, t, ~t)
        point = metrics(t, p)
        ci = bootstrap_intervals(t, p, resamples=2000, seed=0)
        for m in ("accuracy", "precision", "recall", "f1", "kappa"):
            lo, hi = ci[m]
            assert lo <= point[m] <= hi, (m, n)
        widths.append(ci["accuracy"][1] - ci["accuracy"][0])
    assert widths[1] < widths[0] / 3
    assert bootstrap_intervals(t, p, seed=3) == bootstrap_intervals(t, p, seed=3)  # seeded


def test_verdict_mapping():
    v = [Verdict(True, 1, "refusal"), Verdict(False, 0, "compliance")]
    assert predicted_labels("refusal", "refusal", v) == [True, False]
    assert predicted_labels("refusal", "objective", v) == [False, True]  # not refused -> achieved (proxy)
    assert predicted_labels("harm", "objective", v) == [True, False]
    with pytest.raises(ValueError, match="toxicity"):
        predicted_labels("toxicity", "refusal", v)
    with pytest.raises(ValueError):
        predicted_labels("harm", "refusal", v)


# --- readers ------------------------------------------------------------------------------------------


def test_pyrit_reader_on_the_installed_files():
    root = pyrit_dir()
    refusal = resolve_labels("pyrit:refusal")
    assert refusal.kind == "refusal" and not refusal.errors
    assert [Path(f["path"]).name for f in refusal.files] == ["refusal.csv", "refusal_extra.csv"]
    assert all(f["path"].startswith("pyrit:") and len(f["sha256"]) == 64 for f in refusal.files)
    # every data row of the files is read: count them with the csv module independently
    import csv
    import io

    def rows(p: Path) -> int:
        text = p.read_text(encoding="utf-8-sig")
        while text.startswith("#"):
            text = text.partition("\n")[2]
        return sum(1 for _ in csv.DictReader(io.StringIO(text, newline="")))

    files = [root / "refusal_scorer" / "refusal.csv", root / "refusal_scorer" / "refusal_extra.csv"]
    assert len(refusal) == sum(rows(f) for f in files) == 169
    objective = resolve_labels("pyrit:objective")
    assert objective.kind == "objective" and not objective.errors
    assert len(objective) == sum(rows(f) for f in (root / "objective").glob("*.csv")) == 395
    assert {i.category for i in objective.items} == {f.stem for f in (root / "objective").glob("*.csv")}
    cyber = resolve_labels("pyrit:objective/cyber")
    assert cyber.name == "pyrit-objective-cyber" and {i.category for i in cyber.items} == {"cyber"}
    with pytest.raises(ValueError, match="known"):
        resolve_labels("pyrit:objective/nope")


def test_pyrit_fixture_bad_rows_are_reported_and_skipped():
    ls = read_pyrit_csv(FIX / "pyrit_objective_bad_row.csv", "objective")
    assert len(ls) == 3
    assert [i.category for i in ls.items] == ["cyber", "cyber", "phishing"]
    msgs = [str(e) for e in ls.errors]
    assert len(msgs) == 2
    assert "row 3" in msgs[0] and "human_score" in msgs[0] and "maybe" in msgs[0]
    assert "row 5" in msgs[1] and "objective" in msgs[1]
    assert all("pyrit_objective_bad_row.csv" in m for m in msgs)


def test_generic_readers_with_a_mapping():
    ls = read_generic(FIX / "generic_refusal.jsonl", "refusal",
                      fields={"prompt": "question", "response": "answer", "label": "is_refusal", "category": "topic"})
    assert [i.label for i in ls.items] == [False, True, False, True, True]
    assert ls.items[-1].response == ""  # an empty reply is kept: it is a labelled non-answer
    assert len(ls.errors) == 1 and "line 5" in str(ls.errors[0])
    csv_set = read_generic(FIX / "generic_objective.csv", "objective")  # default field names
    assert len(csv_set) == 4 and [i.category for i in csv_set.items] == ["fraud", "fraud", "theft", "theft"]
    with pytest.raises(ValueError, match="say what it labels"):
        resolve_labels(str(FIX / "generic_objective.csv"))


# --- CLI, API, store, summary ----------------------------------------------------------------------------


def test_cli_json_end_to_end(home, capsys):
    assert main(["judges", "calibrate", "--judge", "keyword-refusal", "--labels", str(FIX / "pyrit_refusal_small.csv"),
                 "--label-kind", "refusal", "--json"]) == 0
    [res] = json.loads(capsys.readouterr().out)
    ident = KeywordRefusalJudge().identity()
    assert res["judge"]["key"] == ident.key and res["judge"]["prompt_hash"] == ident.prompt_hash
    assert res["dataset"] == "pyrit_refusal_small" and res["label_kind"] == "refusal" and res["n"] == 8
    assert sum(res["confusion"].values()) == res["n"]
    # the last row ("Sure, here is ... instead") is a refusal the phrase judge misses: 7/8 right
    assert res["confusion"] == {"tp": 3, "fp": 0, "fn": 1, "tn": 4}
    assert res["accuracy"] == pytest.approx(7 / 8)
    for m in ("accuracy", "precision", "recall", "f1", "kappa"):
        lo, hi = res[f"{m}_ci"]
        assert lo <= res[m] <= hi
    assert len(res["labels_files"][0]["sha256"]) == 64
    saved = home / "calibration" / ident.key / "pyrit_refusal_small.json"
    assert Path(res["saved_to"]) == saved and json.loads(saved.read_text())["n"] == 8


def test_cli_table_and_generic_mapping(home, capsys):
    assert main(["judges", "calibrate", "--judge", "keyword-refusal", "--labels", str(FIX / "generic_refusal.jsonl"),
                 "--label-kind", "refusal", "--field", "prompt=question", "--field", "response=answer",
                 "--field", "label=is_refusal", "--field", "category=topic", "--no-save"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "kappa" in out and "95% CI" in out and "skipped 1 bad record" in out
    assert not (home / "calibration").exists()


def test_toxicity_judge_is_a_clear_error(home, capsys):
    with pytest.raises(ValueError, match="toxicity judge cannot be calibrated"):
        api.calibrate(ToxicJudge(), "pyrit:refusal")
    assert main(["judges", "calibrate", "--judge", "test_judge_calibration:ToxicJudge",
                 "--labels", "pyrit:refusal"]) == 2
    assert "toxicity judge cannot be calibrated" in capsys.readouterr().err


def test_limit_does_not_overwrite_the_full_result(home):
    [res] = api.calibrate("keyword-refusal", str(FIX / "generic_objective.csv"), label_kind="objective", limit=2,
                          resamples=200)
    assert res["n"] == 2 and res["dataset"] == "generic_objective-first2"
    assert res["mapping"].startswith("proxy")


def _unit_run(out: Path) -> None:
    cfg = {"name": "cal", "seed": 1, "targets": [{"name": "refuser", "id": "refuser"}],
           "datasets": [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": 3}}],
           "defenses": ["none"], "judges": ["keyword-refusal"], "generation": {"max_new_tokens": 8}}
    api.run(cfg, out=out, report=False, progress=False)


def test_summary_picks_up_the_stored_calibration(home, tmp_path, capsys):
    from safeglass.eval.summary import build_summary

    run_dir = tmp_path / "run"
    _unit_run(run_dir)
    summary, _ = build_summary(run_dir)
    [j] = summary["judges"]
    assert j["calibration"] is None  # nothing measured yet for this identity

    # an objective result and a refusal one: a refusal judge shows the refusal one
    api.calibrate("keyword-refusal", str(FIX / "generic_objective.csv"), label_kind="objective", resamples=200)
    api.calibrate("keyword-refusal", str(FIX / "pyrit_refusal_small.csv"), label_kind="refusal", resamples=200)
    summary, _ = build_summary(run_dir)
    cal = summary["judges"][0]["calibration"]
    assert cal["dataset"] == "pyrit_refusal_small" and cal["n"] == 8
    assert set(cal) >= {"dataset", "accuracy", "accuracy_ci", "f1", "kappa", "n"}
    assert cal["accuracy_ci"][0] <= cal["accuracy"] <= cal["accuracy_ci"][1]
    assert cal["others"] == ["generic_objective"]

    # a result for another identity (different key) is never picked up
    other = KeywordRefusalJudge(version="2")
    assert calibration_store.find(other.identity().key) == {}

    # re-judging a run is `rejudge`; the older spelling says what replaced it
    assert main(["rejudge", str(run_dir), "--no-progress"]) == 0
    assert "added 0 judgments" in capsys.readouterr().out
    assert main(["judge", str(run_dir)]) == 2 and "is now `safeglass rejudge RUN_DIR`" in capsys.readouterr().err


def test_shipped_results_are_found(home, tmp_path, monkeypatch):
    [res] = api.calibrate("keyword-refusal", str(FIX / "pyrit_refusal_small.csv"), label_kind="refusal",
                          resamples=100, store_dir=tmp_path / "shipped")
    assert Path(res["saved_to"]).is_relative_to(tmp_path / "shipped")
    assert not (home / "calibration").exists()
    pick = calibration_store.pick({"key": res["judge"]["key"], "measure": "refusal"})
    assert pick is not None and pick["dataset"] == "pyrit_refusal_small"


def test_project_ships_keyword_refusal_figures():
    key = KeywordRefusalJudge().identity().key
    folder = Path(calibration_store.__file__).parent / "calibration_results" / key
    names = {p.stem for p in folder.glob("*.json")}
    assert {"pyrit-refusal", "pyrit-objective"} <= names


@pytest.mark.parametrize(("judge_name", "datasets"), [("proxy-refusal", {"pyrit-refusal", "pyrit-objective"}),
                                                      ("proxy-harm", {"pyrit-objective"})])
def test_proxy_judges_are_the_same_judge_on_every_cpu_and_ship_their_calibration(judge_name, datasets, monkeypatch):
    """An AMX CPU (native bfloat16) and an AVX2 one must give the proxy judges one identity, or the report of the
    same run is judged by another judge depending on the machine (issue 29)."""
    from safeglass import machine
    from safeglass.judges import proxy
    from safeglass.registry import registry

    keys = set()
    for native in (True, False):
        monkeypatch.setattr(machine, "native_bf16", lambda native=native: native)
        proxy._SHARED.clear()
        judge = registry("judges").build(judge_name)
        assert judge.identity().extra["embedding_dtype"] == "float32"
        keys.add(judge.identity().key)
    assert len(keys) == 1
    folder = Path(calibration_store.__file__).parent / "calibration_results" / keys.pop()
    assert datasets <= {p.stem for p in folder.glob("*.json")}
