"""An upstream engine for ``safeglass serve`` on this machine: llama.cpp's OpenAI-compatible server
(``python -m llama_cpp.server``, from ``llama-cpp-python[server]``) started as a subprocess on a GGUF file, by
default the packaged SmolLM2. The tests and the load bench put ``safeglass serve`` in front of it; on a GPU machine
vLLM or SGLang take its place with the same serve config (docs/serve.md)."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from safeglass.processes import stop_process

INSTALL_HINT = ("python -m llama_cpp.server needs llama-cpp-python with its [server] extras (make install builds "
                "them); by hand: pip install 'llama-cpp-python[server]==0.3.36' with the CMAKE_ARGS of the Makefile")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it). Another process may take it before it is bound: callers
    that can bind port 0 themselves should."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def llama_server_command(model: str | Path, port: int, host: str = "127.0.0.1", alias: str = "smollm2",
                         threads: int = 1, n_ctx: int = 2048) -> list[str]:
    """The command line of llama.cpp's OpenAI-compatible server on ``model``, serving it as ``alias``. ``seed`` 0:
    sampled replies repeat across restarts (greedy ones do anyway)."""
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", host, "--port", str(port),
            "--model_alias", alias, "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--n_ctx", str(n_ctx), "--seed", "0"]


@contextmanager
def llama_server(model: str | Path | None = None, *, port: int | None = None, host: str = "127.0.0.1",
                 alias: str = "smollm2", threads: int = 1, ready_timeout_s: float = 120.0,
                 log: str | Path | None = None) -> Iterator[str]:
    """Run llama.cpp's server on ``model`` (default: the packaged SmolLM2 GGUF) until the block ends; yields its
    base URL (``http://HOST:PORT/v1``) once ``/v1/models`` answers. The server's output goes to ``log`` (default: a
    temporary file) and its end is quoted when it fails to start."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("fastapi") is None:
        raise ModuleNotFoundError(INSTALL_HINT)
    if model is None:
        from safeglass.targets.hf_lm import smollm2_path

        model = smollm2_path()
    port = port or free_port(host)
    url = f"http://{host}:{port}/v1"
    # A file, never a pipe: the server writes a line or more for every request, and a pipe nobody reads would fill
    # and stop it.
    out = open(log, "w+b") if log is not None else tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(llama_server_command(model, port, host, alias, threads), stdout=out,
                            stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, url, ready_timeout_s, out)
        yield url
    finally:
        stop_process(proc, 15)
        out.close()


def _wait_ready(proc: subprocess.Popen, url: str, timeout_s: float, out: IO[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out.seek(0)
            tail = out.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"llama.cpp server exited with status {proc.returncode} before it answered: {tail}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"llama.cpp server at {url} did not answer /models within {timeout_s:.0f} s")
