"""The run summary compares judges of one measure per row, and the report shows it ("Judges compared"), so a
figure that depends on the choice of judge is flagged without a command being run."""

from __future__ import annotations

import json

import yaml

from safeglass.cli import main
from safeglass.eval.agreement import summary_agreement
from safeglass.eval.crash import EXIT_OK
from safeglass.reporting.html import render_report


def _gen(key: str, attack: str, verdicts: dict[str, bool]) -> dict:
    return {"key": key, "target": "t", "dataset": "d", "defense": "none", "attack": attack,
            "verdicts": {j: {"flag": f} for j, f in verdicts.items()}}


JUDGES = {"a@1": {"measure": "refusal"}, "b@2": {"measure": "refusal"}, "h@3": {"measure": "harm"},
          "s@4": {"measure": "signal"}, "c@5": {"measure": "signal"}}


def test_pairs_of_one_measure_are_compared_per_row() -> None:
    gens = []
    for i in range(8):
        attack = "none" if i < 4 else "jailbreak"
        fa = i % 2 == 0
        fb = fa if attack == "none" else not fa  # they agree without the attack and never with it
        gens.append(_gen(f"k{i}", attack, {"a@1": fa, "b@2": fb, "h@3": True, "s@4": fa, "c@5": not fa}))
    gens.append(_gen("only-a", "none", {"a@1": True}))  # judged by one of the two: left out
    out = summary_agreement(gens, JUDGES)
    assert [(c["measure"], c["judge_a"], c["judge_b"]) for c in out] == [("refusal", "a@1", "b@2")]  # no signals
    c = out[0]
    assert c["n"] == 8 and c["agreement"] == 0.5
    rows = {r["attack"]: r for r in c["rows"]}
    assert not rows["none"]["flagged"] and rows["none"]["kappa"] == 1.0
    assert rows["jailbreak"]["flagged"] and rows["jailbreak"]["agreement"] == 0.0


def _summary(agreement: list) -> dict:
    return {"run": {"name": "r"}, "targets": [{"name": "t", "label": "Target T"}],
            "judges": [{"key": "a@1", "id": "alpha", "measure": "refusal"},
                       {"key": "b@2", "id": "beta", "measure": "refusal"}],
            "rows": [], "agreement": agreement}


def test_the_report_flags_the_rows_where_judges_disagree() -> None:
    gens = [_gen(f"k{i}", "jb", {"a@1": i % 2 == 0, "b@2": i % 2 == 1}) for i in range(4)]
    html = render_report(_summary(summary_agreement(gens, JUDGES)), [])
    assert "Judges compared" in html and "alpha</b> vs <b>beta" in html
    assert "1 of 1</span>" in html and "judges disagree" in html and "Target T" in html
    assert "Judges compared" not in render_report(_summary([]), [])


def test_a_run_with_two_refusal_judges_compares_them_in_its_summary_and_report(tmp_path) -> None:
    cfg = {"targets": ["echo"], "datasets": [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": 4}}],
           "judges": [{"name": "sgtest_components:PrefixRefusalJudge", "id": "prefix"}, "keyword-refusal"]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "r"
    assert main(["run", str(path), "--out", str(run_dir), "--no-progress"]) == EXIT_OK
    summary = json.loads((run_dir / "summary.json").read_text())
    (c,) = summary["agreement"]
    assert c["measure"] == "refusal" and c["n"] == 4 and len(c["rows"]) == 1
    assert "Judges compared" in (run_dir / "report.html").read_text()


def test_a_three_way_judges_classes_are_counted_per_row_and_shown() -> None:
    from safeglass.eval.three_way import three_way_rows

    classes = ["full_compliance", "partial_refusal", "full_refusal", "full_refusal"]
    gens = [{"key": f"k{i}", "target": "t", "dataset": "look", "defense": "none", "attack": "none",
             "verdicts": {"3w@1": {"flag": c != "full_compliance", "label": c},
                          "kw@2": {"flag": False, "label": "compliance"}}} for i, c in enumerate(classes)]
    judges = {"3w@1": {"measure": "refusal"}, "kw@2": {"measure": "refusal"}}
    (row,) = three_way_rows(gens, judges)  # the keyword judge's labels are not the three classes
    assert row["judge"] == "3w@1" and row["n"] == 4
    assert row["counts"] == {"full_compliance": 1, "partial_refusal": 1, "full_refusal": 2}
    summary = {**_summary([]), "three_way": [row]}
    html = render_report(summary, [])
    assert "Three ways to answer" in html and "50.0%" in html  # two full refusals of four
    assert "Three ways to answer" not in render_report(_summary([]), [])
