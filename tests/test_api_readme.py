"""The README's Python API example runs as written, in one process, and no API name is shadowed."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys

from conftest import ROOT, subprocess_env

import safeglass


def test_readme_api_example_runs_as_written_in_one_process(tmp_path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"### Python API\n.*?```python\n(.*?)```", readme, re.S).group(1)
    # Verbatim, in one interpreter: safeglass.report must still be the function after safeglass.run imported
    # the reporting modules (it once became a module and raised "'module' object is not callable").
    out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert "generated 40, failed 0: runs/api-quickstart/report.html" in out.stdout
    assert "runs/api-quickstart/summary.json 0" in out.stdout
    assert "text-jailbreak ['template', 'template_file']" in out.stdout
    assert (tmp_path / "runs" / "api-quickstart" / "report.html").is_file()


def test_no_api_name_is_also_a_submodule() -> None:
    submodules = {m.name for m in pkgutil.iter_modules(safeglass.__path__)}
    assert not set(safeglass.__all__) & submodules
    __import__("safeglass.reporting.html")  # what a run imports

    assert callable(safeglass.report) and callable(safeglass.run) and callable(safeglass.judge)


def test_readme_config_example_is_the_example_file_and_its_options_check() -> None:
    import yaml

    from safeglass.config import load_config, parse_config
    from safeglass.eval.plan import check_options

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Running your own audit\n.*?```yaml\n(.*?)```", readme, re.S).group(1)
    example = ROOT / "configs" / "example.yaml"
    assert yaml.safe_load(block) == yaml.safe_load(example.read_text(encoding="utf-8"))
    check_options(parse_config(yaml.safe_load(block), source="README"))  # every component's args are real
    check_options(load_config(ROOT / "configs" / "demo.yaml"))


def test_every_config_the_docs_name_exists() -> None:
    named = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        named |= set(re.findall(r"configs/[A-Za-z0-9_.-]+\.yaml", doc.read_text(encoding="utf-8")))
    assert named and [n for n in sorted(named) if not (ROOT / n).is_file()] == []
