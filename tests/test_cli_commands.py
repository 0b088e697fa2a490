"""The CLI's shape: one spelling per command, capability groups, `report --check` in a real browser."""

from __future__ import annotations

from conftest import require

from safeglass.cli import RENAMED, build_parser, main

RUN = {"name": "cli", "targets": ["echo"], "datasets": [{"name": "sgtest_components:load_unit", "args": {"n": 4}}],
       "judges": [{"name": "sgtest_components:PrefixRefusalJudge", "id": "prefix"}]}


def _commands(parser) -> dict:
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_every_capability_is_a_group_and_no_command_has_two_spellings():
    top = _commands(build_parser())
    assert {"run", "rejudge", "report", "merge", "list", "judges", "organisms", "neurons"} <= set(top)
    assert not set(RENAMED) & set(top)
    assert set(_commands(top["neurons"])) == {"find", "apply", "eval"}
    assert set(_commands(top["organisms"])) == {"list", "build", "verify"}
    assert set(_commands(top["judges"])) == {"calibrate", "agree"}
    assert {"eval", "defend", "segment", "vqa", "amplify", "vary", "report", "typo", "attack", "robust-train"} <= set(
        _commands(top["clip"]))
    assert set(_commands(top["align"])) == {"audit"}


def test_the_old_spellings_name_their_replacement(capsys):
    assert main(["judge-calibrate", "--judge", "x"]) == 2
    assert "judges calibrate" in capsys.readouterr().err


def test_report_check_opens_the_report_in_chromium(tmp_path, capsys):
    from safeglass.api import run
    from safeglass.reporting.browser import find_chromium

    require(find_chromium() is not None, "headless Chromium", "run scripts/ensure-chromium.sh")
    run(RUN, out=tmp_path / "r", progress=False)
    assert main(["report", str(tmp_path / "r"), "--check"]) == 0
    assert "report check: clean" in capsys.readouterr().out
    # a report that logs an error fails the check
    (tmp_path / "r" / "report.html").write_text("<html><script>console.error('broken')</script></html>")
    from safeglass.cli import _check_report

    assert _check_report(tmp_path / "r" / "report.html") == 1
    assert "console error: broken" in capsys.readouterr().err
