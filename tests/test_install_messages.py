"""What `make` says before its slow or system-wide steps: compiling llama.cpp (minutes, silent under pip -q) and
installing Chromium with apt-get (system-wide, as root) are announced before they start."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_llama_cpp_compile_is_announced_first() -> None:
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8").split("$(STAMP): $(REQS)")[1].split("\n\n")[0]
    lines = recipe.splitlines()
    install = next(i for i, line in enumerate(lines) if re.search(r"llama-cpp-python(\[[\w,]+\])?==", line))
    echoes = [i for i, line in enumerate(lines) if line.strip().startswith("@echo") and "llama.cpp" in line]
    assert echoes and echoes[-1] < install, recipe


def test_ensure_chromium_says_what_it_installs_and_why_before_apt_get(tmp_path) -> None:
    fake = tmp_path / "bin"  # root, apt-get present, no browser anywhere on PATH
    fake.mkdir()
    (fake / "id").write_text("#!/bin/sh\necho 0\n")
    (fake / "apt-get").write_text("#!/bin/sh\necho \"APT-GET $*\"\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "SAFEGLASS_CHROMIUM"}
    env["PATH"] = str(fake)
    out = subprocess.run(["/bin/bash", str(ROOT / "scripts" / "ensure-chromium.sh")], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    said = out.stdout
    first_apt = said.index("APT-GET")
    assert "need headless Chromium" in said[:first_apt] and "tests/test_report_browser.py" in said[:first_apt]
    assert "installing Debian's chromium package system-wide" in said[:first_apt]
    assert "apt-get install" in said[:first_apt] and "SAFEGLASS_CHROMIUM" in said[:first_apt]
