"""Child processes safeglass starts and must not leave behind (a headless browser, an upstream server)."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen, grace_s: float) -> None:
    """Ask ``proc`` to exit (SIGTERM), give it ``grace_s`` seconds to close cleanly, then kill it; always reaped."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
