"""Trained artifacts, built once per content key: a modifier's weights, an adapter, a prompt pool, a fitted
selector. Whatever trains is keyed like a run's results (a content hash of what changes it), built into a run
folder or ``$SAFEGLASS_HOME/cache/artifacts``, and every later worker, resume or command reads the finished
folder instead of training again.

A build happens in ``<key>.partial/`` under an inter-process lock (``<key>.lock``): the builder writes its outputs
there and may checkpoint into it (``CHECKPOINTS``, which ``training.loop.TrainLoop`` resumes from), so a killed or
failed build leaves the partial folder and the next call resumes it. On success the manifest (key payload,
versions, seconds) is written last and the folder renamed to ``<key>/``: a folder with a manifest is finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from safeglass.hashing import canonical_json, content_hash
from safeglass.paths import cache_dir
from safeglass.version import __version__

MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"  # a builder's resume state inside its partial folder; removed once the build is done
_KIND = re.compile(r"[A-Za-z0-9_.-]+")


class ArtifactBuildError(RuntimeError):
    """A builder raised: its partial folder is kept, and the next build of the same key resumes from it."""


def artifact_root(root: str | Path | None = None) -> Path:
    """Where artifacts live: `root` (a run folder's ``artifacts``, say) or the cache."""
    return Path(root) if root is not None else cache_dir("artifacts")


def artifact_dir(kind: str, key_payload: Any, root: str | Path | None = None) -> Path:
    """The finished folder an artifact of `kind` with this key payload has (or will have)."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"artifact kind {kind!r}: use letters, digits, '_', '-' or '.' (it names a folder)")
    return artifact_root(root) / kind / content_hash(key_payload)


def is_built(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def build_once(kind: str, key_payload: Any, builder: Callable[[Path], Any], root: str | Path | None = None, *,
               versions: Mapping[str, str] | None = None) -> Path:
    """The folder of the artifact `kind` keyed by `key_payload` (JSON-able: what changes the artifact), built by
    ``builder(partial_dir)`` only if no finished one exists.

    The builder writes everything the artifact is into `partial_dir`, which may hold a previous attempt's files:
    a builder that checkpoints there resumes. Concurrent callers (workers, on this machine or on a file system
    with working ``flock``) wait for the one building and read its result. `versions` (library versions, say)
    go into the manifest beside safeglass's own.
    """
    final = artifact_dir(kind, key_payload, root)
    if is_built(final):
        return final  # the common case reads no lock
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.with_name(final.name + ".lock")):
        if is_built(final):
            return final  # another worker built it while this one waited
        partial = final.with_name(final.name + ".partial")
        if not is_built(partial):  # a build killed between its manifest and the rename needs only the rename
            _build(kind, final.name, key_payload, builder, partial, versions)
        if final.exists():
            shutil.rmtree(final)  # unfinished (no manifest), and a rename onto a folder with files would fail
        partial.replace(final)
    return final


def _build(kind: str, key: str, key_payload: Any, builder: Callable[[Path], Any], partial: Path,
           versions: Mapping[str, str] | None) -> None:
    """Run the builder in `partial`, drop its checkpoints and write the manifest last."""
    resumed = partial.exists() and any(partial.iterdir())
    partial.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    try:
        builder(partial)
    except Exception as exc:
        raise ArtifactBuildError(f"artifact {kind}/{key}: the build failed ({type(exc).__name__}: {exc}); "
                                 f"{partial} is kept and the next build resumes from it") from exc
    shutil.rmtree(partial / CHECKPOINTS, ignore_errors=True)  # resume state, not part of the artifact
    manifest = {"kind": kind, "key": key, "key_payload": json.loads(canonical_json(key_payload)),
                "versions": {**_own_versions(), **(versions or {})},
                "seconds": round(time.perf_counter() - t0, 3), "resumed": resumed,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = partial / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(partial / MANIFEST)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on `path`: released by the kernel when its holder dies, so a killed build never
    leaves a stale lock behind."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _own_versions() -> dict[str, str]:
    return {"safeglass": __version__, "python": platform.python_version()}
