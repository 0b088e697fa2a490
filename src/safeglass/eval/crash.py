"""Exit statuses and what a failure reports, shared by the CLI and the worker processes.

One table of statuses, so that a parent can tell a worker whose generations failed (1: a rerun retries them)
from a worker that crashed (3: its traceback says why), and a user's script can tell both from a config
mistake (2). A crash writes its traceback to a file, since a one-line message rarely says where it broke.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from safeglass.config import ConfigError
from safeglass.data.errors import DataError
from safeglass.options import UnknownOptionError
from safeglass.paths import safeglass_home
from safeglass.registry import UnknownComponentError

EXIT_OK = 0
EXIT_FAILED = 1        # some generations or judgments failed; finished work is kept and a rerun retries the rest
EXIT_USAGE = 2         # a config or usage error (argparse uses 2 as well)
EXIT_CRASH = 3         # anything else: the exception's type and message are printed, its traceback kept
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class UsageError(ValueError):
    """A command line asking for something that cannot be done as asked (a malformed option, a missing tool)."""


# What the user can fix in the config or on the command line: the message is the whole story, no traceback.
# FileNotFoundError: safeglass raises it for a run directory, weights or labels that are not where they were said
# to be.
USAGE_ERRORS: tuple[type[BaseException], ...] = (ConfigError, UnknownOptionError, UnknownComponentError, DataError,
                                                 UsageError, FileNotFoundError)


def exit_status(exc: BaseException) -> int:
    """The status a command that raised ``exc`` exits with."""
    if isinstance(exc, WorkerCrashed):
        return exc.status
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else EXIT_CRASH


def describe(exc: BaseException) -> str:
    """``Type: message``: the cause in one line (a bare message such as "'x'" from a KeyError says nothing). A
    crashed worker's message already names the worker's own exception."""
    return str(exc) if isinstance(exc, WorkerCrashed) else f"{type(exc).__name__}: {exc}"


def crash_log() -> Path:
    """Where the CLI keeps the last crash's traceback: ``$SAFEGLASS_HOME/logs/last-crash.txt``."""
    return safeglass_home() / "logs" / "last-crash.txt"


def write_traceback(path: str | Path, exc: BaseException) -> Path:
    """The exception's full traceback, written to ``path`` (folders made); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    return path


class WorkerCrashed(RuntimeError):
    """A worker process that did not finish: its status and, when it could write one, its traceback."""

    def __init__(self, rank: int, status: int, report: str | None, also: str = "",
                 where: str | Path | None = None) -> None:
        self.rank, self.report, self.where = rank, report, where
        # a worker killed by a signal (negative status: the OOM killer's SIGKILL, say) exits as a crash here
        self.status = status if status in (EXIT_USAGE, EXIT_CRASH) else EXIT_CRASH
        if status < 0:
            why = f"was killed by signal {-status} (out of memory? the system log says)"
        else:
            why = f"exited with status {status}"
        last = (report or "").strip().splitlines()
        cause = f": {last[-1]}" if last else " without a traceback"
        super().__init__(f"worker {rank} {why}{cause}{also}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with what the run had finished and saved by then (a rerun resumes from there)."""

    def __init__(self, generations: int, judgments: int) -> None:
        super().__init__()
        self.generations, self.judgments = generations, judgments

    def saved(self) -> str:
        """What was saved, in words."""
        if not self.generations and not self.judgments:
            return "nothing was finished yet, so nothing is saved"
        parts = [f"{n} {what}{'s' if n != 1 else ''}" for n, what in ((self.generations, "generation"),
                                                                       (self.judgments, "judgment")) if n]
        verb = "is" if self.generations + self.judgments == 1 else "are"
        return f"{' and '.join(parts)} finished this run {verb} saved"
