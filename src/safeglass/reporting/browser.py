"""Open a local HTML file in headless Chromium and report what happened: the DOM after scripts ran,
console messages with their levels, uncaught exceptions and any network request.

Used by the report tests and by ``safeglass report --check``. Stdlib only: it speaks the DevTools
protocol over a minimal WebSocket client, because ``--dump-dom`` with ``--enable-logging`` logs
every console message at INFO, which cannot tell ``console.error`` from ``console.log``.
``dump_dom`` (the simple ``--dump-dom`` route) is kept as a fallback.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeglass.processes import stop_process

# Flags that keep headless Chromium from phoning home (it otherwise tries to reach Google
# services and logs failures) and that let it run as root inside containers.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio", "--no-default-browser-check"]
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class BrowserError(RuntimeError):
    """Chromium could not be started or did not answer."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: ``$SAFEGLASS_CHROMIUM``, then the usual names on PATH."""
    env = os.environ.get("SAFEGLASS_CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class ConsoleMessage:
    level: str  # "log", "info", "warning", "error", "debug", ...; exceptions are "error"
    text: str
    source: str = "console"  # "console", "exception" or "log" (browser-side, e.g. CSP or failed loads)


@dataclass
class PageResult:
    dom: str
    title: str
    console: list[ConsoleMessage] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for, the page itself included
    values: list[Any] = field(default_factory=list)  # results of the ``evaluate`` expressions, in order

    @property
    def errors(self) -> list[ConsoleMessage]:
        return [m for m in self.console if m.level in ("error", "assert")]

    @property
    def external_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file:", "data:", "about:", "blob:"))]


# --------------------------------------------------------------------------------------------
# minimal WebSocket client (RFC 6455, client side, text frames only)


class _WebSocket:
    def __init__(self, url: str, timeout: float):
        assert url.startswith("ws://")
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port or 80)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        # No Origin header: Chromium only enforces --remote-allow-origins when one is sent.
        req = (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise BrowserError("websocket handshake closed")
            buf += chunk
        head, _, self.pending = buf.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise BrowserError(f"websocket handshake refused: {head[:200]!r}")

    def _read(self, n: int) -> bytes:
        while len(self.pending) < n:
            chunk = self.sock.recv(max(65536, n - len(self.pending)))
            if not chunk:
                raise BrowserError("websocket closed")
            self.pending += chunk
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def send(self, text: str) -> None:
        data = text.encode()
        head = bytearray([0x81])
        n = len(data)
        if n < 126:
            head.append(0x80 | n)
        elif n < 1 << 16:
            head.append(0x80 | 126)
            head += struct.pack(">H", n)
        else:
            head.append(0x80 | 127)
            head += struct.pack(">Q", n)
        mask = os.urandom(4)
        head += mask
        self.sock.sendall(bytes(head) + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self) -> str:
        parts: list[bytes] = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise BrowserError("websocket closed by browser")
            if opcode in (0x9, 0xA):  # ping/pong: Chromium does not ping clients, ignore
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode("utf-8", errors="replace")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------


def _remote_text(obj: dict) -> str:
    if "value" in obj:
        v = obj["value"]
        return v if isinstance(v, str) else json.dumps(v)
    return str(obj.get("description") or obj.get("unserializableValue") or obj.get("type", ""))


def open_page(path: str | Path, *, evaluate: list[str] | None = None, timeout: float = 20.0,
              settle: float = 0.3, chromium: str | None = None, width: int | None = None,
              height: int = 900) -> PageResult:
    """Load ``path`` in headless Chromium and return its DOM, console messages and requests.

    ``evaluate`` expressions run in the page after it loaded (in order, awaiting promises); their
    JSON values land in ``PageResult.values``, and the DOM is taken after the last one, so a test
    can click a button and see the result. ``width`` (CSS px) sets the viewport before the page
    loads, so layout tests can measure the page at a given window size.
    """
    binary = chromium or find_chromium()
    if not binary:
        raise BrowserError("chromium not found (install it with scripts/ensure-chromium.sh)")
    url = Path(path).resolve().as_uri()
    profile = tempfile.mkdtemp(prefix="safeglass-chromium-")
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "--remote-debugging-address=127.0.0.1", "about:blank"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    ws: _WebSocket | None = None
    deadline = time.monotonic() + timeout
    try:
        # Port 0 lets Chromium pick a free port; it announces it in DevToolsActivePort.
        port_file = Path(profile) / "DevToolsActivePort"
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None:
                raise BrowserError(f"chromium exited early with code {proc.returncode}")
            if time.monotonic() > deadline:
                raise BrowserError("chromium did not open its debugging port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        ws_url = None
        while ws_url is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    targets = json.load(r)
                ws_url = next((t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"), None)
            except OSError:
                pass
            if ws_url is None:
                if time.monotonic() > deadline:
                    raise BrowserError("no page target in chromium")
                time.sleep(0.05)
        ws = _WebSocket(ws_url, timeout=max(1.0, deadline - time.monotonic()))
        viewport = (width, height) if width else None
        return _drive(ws, url, evaluate or [], deadline, settle, viewport)
    finally:
        if ws:
            ws.close()
        stop_process(proc, 5)
        shutil.rmtree(profile, ignore_errors=True)


def _drive(ws: _WebSocket, url: str, evaluate: list[str], deadline: float, settle: float,
           viewport: tuple[int, int] | None = None) -> PageResult:
    result = PageResult(dom="", title="")
    next_id = [0]
    loaded = [False]

    def handle(msg: dict) -> None:
        method, p = msg.get("method"), msg.get("params") or {}
        if method == "Runtime.consoleAPICalled":
            text = " ".join(_remote_text(a) for a in p.get("args", []))
            result.console.append(ConsoleMessage(p.get("type", "log"), text))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails") or {}
            text = (d.get("exception") or {}).get("description") or d.get("text", "exception")
            result.console.append(ConsoleMessage("error", text, "exception"))
        elif method == "Log.entryAdded":
            e = p.get("entry") or {}
            result.console.append(ConsoleMessage(e.get("level", "info"), e.get("text", ""), "log"))
        elif method == "Network.requestWillBeSent":
            result.requests.append((p.get("request") or {}).get("url", ""))
        elif method == "Page.loadEventFired":
            loaded[0] = True

    def call(method: str, **params: Any) -> dict:
        next_id[0] += 1
        ws.send(json.dumps({"id": next_id[0], "method": method, "params": params}))
        while True:
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {method}")
            msg = json.loads(ws.recv())
            if msg.get("id") == next_id[0]:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result") or {}
            handle(msg)

    def pump(until: float, stop: Any = None) -> None:
        # Read events until a time limit (or a condition), without blocking past it.
        while time.monotonic() < until and not (stop and stop()):
            ws.sock.settimeout(max(0.01, until - time.monotonic()))
            try:
                handle(json.loads(ws.recv()))
            except TimeoutError:
                break
        ws.sock.settimeout(max(1.0, deadline - time.monotonic()))

    for domain in ("Runtime", "Log", "Network", "Page"):
        call(f"{domain}.enable")
    if viewport:
        # Headless Chromium's default window is 800 x 600; emulate the asked-for one before layout happens.
        call("Emulation.setDeviceMetricsOverride", width=viewport[0], height=viewport[1], deviceScaleFactor=1,
             mobile=False)
    call("Page.navigate", url=url)
    pump(deadline, lambda: loaded[0])
    if not loaded[0]:
        raise BrowserError("page did not finish loading")
    pump(time.monotonic() + settle)  # let deferred work (timers, late console output) land
    for expr in evaluate:
        r = call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            result.console.append(ConsoleMessage("error", (d.get("exception") or {}).get("description")
                                                 or d.get("text", "exception"), "exception"))
            result.values.append(None)
        else:
            result.values.append((r.get("result") or {}).get("value"))
        pump(time.monotonic() + 0.05)
    r = call("Runtime.evaluate", expression="[document.title, document.documentElement.outerHTML]",
             returnByValue=True)
    result.title, dom = (r.get("result") or {}).get("value") or ["", ""]
    result.dom = "<!DOCTYPE html>\n" + dom
    return result


def dump_dom(path: str | Path, *, timeout: float = 30.0, chromium: str | None = None) -> tuple[str, list[str]]:
    """Fallback: ``chromium --dump-dom`` and the ``CONSOLE`` lines it logs (levels are not available)."""
    binary = chromium or find_chromium()
    if not binary:
        raise BrowserError("chromium not found (install it with scripts/ensure-chromium.sh)")
    profile = tempfile.mkdtemp(prefix="safeglass-chromium-")
    try:
        proc = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
                               "--v=0", "--dump-dom", Path(path).resolve().as_uri()],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    console = [line.split("] ", 1)[-1] for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def check_report(path: str | Path) -> list[str]:
    """Problems found when opening a report (console errors, network requests); empty means clean."""
    res = open_page(path)
    problems = [f"console {m.level}: {m.text}" for m in res.errors]
    problems += [f"network request: {u}" for u in res.external_requests]
    return problems
