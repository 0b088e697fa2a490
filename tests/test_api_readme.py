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
