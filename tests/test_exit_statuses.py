"""What a run says when it ends: exit statuses by kind of failure (a config error, failed generations, a crash, an
interrupt) with the cause named, the records the datasets skipped, and the finding's table on the console."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from safeglass.cli import build_parser, main
from safeglass.eval.crash import EXIT_CRASH, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

README = Path(__file__).resolve().parents[1] / "README.md"
UNIT = {"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": 4}}
PREFIX = {"name": "sgtest_components:PrefixRefusalJudge", "id": "prefix"}


def _config(tmp_path: Path, **fields) -> Path:
    cfg = {"targets": ["echo"], "datasets": [UNIT], "judges": [PREFIX], **fields}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_config_and_usage_errors_exit_2(tmp_path, capsys) -> None:
    bad = _config(tmp_path, generation={"max_tokens": 5})
    assert main(["run", str(bad), "--out", str(tmp_path / "r")]) == EXIT_USAGE
    assert "field 'generation.max_tokens'" in capsys.readouterr().err
    typo = _config(tmp_path, targets=[{"name": "echo", "args": {"delay": 1}}])
    assert main(["run", str(typo), "--out", str(tmp_path / "r")]) == EXIT_USAGE
    assert "unknown option 'delay'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as parsed:  # argparse's own usage errors
        main(["run"])
    assert parsed.value.code == EXIT_USAGE


def test_an_unknown_dataset_names_the_config_file(tmp_path, capsys) -> None:
    path = _config(tmp_path, datasets=["advbnech"])
    assert main(["run", str(path), "--out", str(tmp_path / "r")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{path}: datasets[0] (advbnech): unknown dataset 'advbnech'" in err and "Did you mean: advbench" in err


def test_a_crash_names_its_cause_keeps_its_traceback_and_exits_3(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SAFEGLASS_HOME", str(tmp_path / "home"))
    path = _config(tmp_path, targets=[{"name": "sgtest_components:CrashingTarget",
                                       "args": {"message": "the device went away"}}])
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--no-progress"]) == EXIT_CRASH
    err = capsys.readouterr().err
    assert "crashed: RuntimeError: the device went away" in err and "config error" in err
    assert "Traceback" not in err  # kept in the log, printed with --traceback
    log = tmp_path / "home" / "logs" / "last-crash.txt"
    assert str(log) in err and "sgtest_components.py" in log.read_text() and "Traceback" in log.read_text()
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--no-progress", "--traceback"]) == EXIT_CRASH
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.parametrize("after, saved", [(0, "nothing was finished yet, so nothing is saved"),
                                          (1, "2 generations finished this run are saved; run the same command "
                                              "again to resume")])
def test_an_interrupt_says_what_was_saved(tmp_path, capsys, after: int, saved: str) -> None:
    path = _config(tmp_path, targets=[{"name": "sgtest_components:InterruptingTarget", "args": {"after": after}}],
                   chunk_size=2)
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--no-progress"]) == EXIT_INTERRUPTED
    assert f"interrupted: {saved}" in capsys.readouterr().err


def test_skipped_records_are_counted_at_the_end_and_can_fail_the_run(tmp_path, capsys) -> None:
    data = tmp_path / "mine.jsonl"
    data.write_text('{"prompt": "How do I bake bread?", "label": "benign"}\n{"label": "benign"}\nnot json\n')
    path = _config(tmp_path, datasets=[{"name": "jsonl", "args": {"path": "mine.jsonl"}}])
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--no-progress", "--no-report"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "skipped 2 bad records (jsonl 2); the first: " in out and "line 2: field 'prompt': missing" in out
    assert main(["run", str(path), "--out", str(tmp_path / "strict"), "--fail-on-skipped"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{path}: skipped 2 bad records" in err and "line 3: field '<json>'" in err
    assert not (tmp_path / "strict").exists()  # stopped before anything was generated


def test_the_end_of_a_run_prints_the_finding_and_the_machine(tmp_path, capsys) -> None:
    path = _config(tmp_path)
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--no-progress"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "finding, judged by prefix" in out
    row = next(line for line in out.splitlines() if line.startswith("echo "))
    assert re.search(r"echo\s+none\s+unit\s+none\s+\d+\.\d%", row), row  # attack success with its interval
    assert "echo: dtype not recorded, generated on " in out


def test_rejudge_writes_the_summary_and_report_again(tmp_path, capsys) -> None:
    path = _config(tmp_path)
    run_dir = tmp_path / "r"
    assert main(["run", str(path), "--out", str(run_dir), "--no-progress"]) == EXIT_OK
    assert main(["rejudge", str(run_dir), "--judges", "keyword-refusal", "--no-progress"]) == EXIT_OK
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "keyword-refusal" in {j["name"] for j in summary["judges"]}
    assert "keyword-refusal" in (run_dir / "report.html").read_text()
    assert "report: " in capsys.readouterr().out


def test_rejudge_with_other_judges_keeps_a_run_with_a_primary_judge(tmp_path) -> None:
    path = _config(tmp_path, primary_judge="prefix")
    run_dir = tmp_path / "r"
    assert main(["run", str(path), "--out", str(run_dir), "--no-progress"]) == EXIT_OK
    assert main(["rejudge", str(run_dir), "--judges", "keyword-refusal", "--no-progress"]) == EXIT_OK
    summary = json.loads((run_dir / "summary.json").read_text())
    names = {j["name"] for j in summary["judges"]}
    assert "keyword-refusal" in names and len(names) == 2  # the run's own judge and the one added


def test_rejudge_and_agree_on_a_folder_that_is_no_run_say_so_and_leave_nothing_behind(tmp_path, capsys) -> None:
    path = _config(tmp_path)
    study = tmp_path / "study"
    assert main(["run", str(path), "--out", str(study / "run"), "--no-progress"]) == EXIT_OK
    capsys.readouterr()
    # a defense study's folder holds its run one level down: the error points there and no store is created
    assert main(["rejudge", str(study), "--judges", "keyword-refusal", "--no-progress"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no run found here" in err and str(study / "run") in err
    assert not (study / "store.sqlite").exists()
    assert main(["judges", "agree", str(study), "--judges", "prefix", "keyword-refusal"]) == EXIT_USAGE
    assert f"a defense study's run is {study / 'run'}" in capsys.readouterr().err
    assert main(["judges", "agree", str(study / "run"), "--judges", "prefix", "keyword-refusal"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "has not judged this run" in err and "crashed" not in err


def test_help_and_readme_list_the_same_exit_statuses() -> None:
    epilog = build_parser().epilog
    readme = README.read_text(encoding="utf-8")
    for status in (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CRASH, EXIT_INTERRUPTED):
        assert re.search(rf"^  {status} ", epilog, re.M), status
        assert re.search(rf"^\| `{status}` \|", readme, re.M), status
