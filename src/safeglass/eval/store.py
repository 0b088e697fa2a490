"""SQLite result store (WAL): generations and judgments keyed by content hash.

Every write is one transaction per chunk, so a process killed at any instant leaves either the whole
chunk or none of it; ``INSERT OR IGNORE`` makes re-delivery of a key harmless.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    target TEXT NOT NULL, dataset TEXT NOT NULL, defense TEXT NOT NULL, attack TEXT NOT NULL,
    sample_id TEXT NOT NULL, kind TEXT NOT NULL, category TEXT NOT NULL,
    prompt TEXT NOT NULL, sample TEXT NOT NULL,
    response TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER, seconds REAL,
    finish_reason TEXT, provenance TEXT NOT NULL, created REAL NOT NULL, worker TEXT
);
CREATE TABLE IF NOT EXISTS judgments (
    key TEXT NOT NULL, judge TEXT NOT NULL,
    flag INTEGER NOT NULL, score REAL, label TEXT, reason TEXT, created REAL NOT NULL,
    PRIMARY KEY (key, judge)
);
CREATE TABLE IF NOT EXISTS errors (
    key TEXT NOT NULL, stage TEXT NOT NULL, message TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attacked (
    key TEXT PRIMARY KEY, attack TEXT NOT NULL, sample_id TEXT NOT NULL, record TEXT NOT NULL, created REAL NOT NULL
);
"""

GEN_COLUMNS = ("key", "target", "dataset", "defense", "attack", "sample_id", "kind", "category", "prompt",
               "sample", "response", "prompt_tokens", "completion_tokens", "seconds", "finish_reason",
               "provenance", "created", "worker")
JUDGE_COLUMNS = ("key", "judge", "flag", "score", "label", "reason", "created")


@dataclass
class GenerationRow:
    key: str
    target: str
    dataset: str
    defense: str
    attack: str
    sample_id: str
    kind: str
    category: str
    prompt: str
    sample: str          # JSON record of the sample as sent
    response: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str
    provenance: str      # JSON: target/defense/attack configs, params, dataset provenance
    created: float
    worker: str = ""

    def as_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, c) for c in GEN_COLUMNS)


class Store:
    """One SQLite file. Safe to open from several processes (WAL); each process keeps one connection."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writes (each call is one transaction) ---------------------------------------------------
    def add_generations(self, rows: Iterable[GenerationRow]) -> int:
        rows = [r.as_tuple() for r in rows]
        with self._tx():
            cur = self.conn.executemany(
                f"INSERT OR IGNORE INTO generations ({','.join(GEN_COLUMNS)}) "
                f"VALUES ({','.join('?' * len(GEN_COLUMNS))})",
                rows)
        return cur.rowcount

    def add_judgments(self, rows: Iterable[tuple[str, str, bool, float, str, str]]) -> None:
        now = time.time()
        with self._tx():
            self.conn.executemany(
                f"INSERT OR IGNORE INTO judgments ({','.join(JUDGE_COLUMNS)}) VALUES (?,?,?,?,?,?,?)",
                [(k, j, int(bool(f)), float(s), lab, rea, now) for k, j, f, s, lab, rea in rows])

    def add_attacked(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """(attack key, attack id, sample id, attacked sample record JSON), one transaction."""
        now = time.time()
        with self._tx():
            self.conn.executemany("INSERT OR IGNORE INTO attacked VALUES (?,?,?,?,?)",
                                  [(k, a, sid, rec, now) for k, a, sid, rec in rows])

    def attacked(self, keys: Iterable[str]) -> dict[str, str]:
        """Stored attacked-sample records by attack key (those of `keys` this store has)."""
        wanted = set(keys)
        return {k: rec for k, rec in self.conn.execute("SELECT key, record FROM attacked") if k in wanted}

    def add_error(self, key: str, stage: str, message: str) -> None:
        with self._tx():
            self.conn.execute("INSERT INTO errors VALUES (?,?,?,?)", (key, stage, message, time.time()))

    def set_meta(self, key: str, value: Any) -> None:
        with self._tx():
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, json.dumps(value, sort_keys=True)))

    def _tx(self) -> _Transaction:
        return _Transaction(self.conn)

    # --- reads -----------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def plan_keys(self) -> set[str] | None:
        """The keys of the plan the run was last started with (None in stores written before it was kept).
        A run directory resumed with a changed config, or a rebuilt model, keeps the old rows; summaries
        and judges read only the current plan's."""
        keys = self.get_meta("plan_keys")
        return set(keys) if isinstance(keys, list) else None

    def generation_keys(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT key FROM generations")}

    def judged_keys(self, judge: str) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT key FROM judgments WHERE judge=?", (judge,))}

    def generations(self, keys: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        cur = self.conn.execute(f"SELECT {','.join(GEN_COLUMNS)} FROM generations ORDER BY key")
        wanted = set(keys) if keys is not None else None
        for row in cur:
            if wanted is None or row[0] in wanted:
                yield dict(zip(GEN_COLUMNS, row))

    def judgments(self) -> Iterator[dict[str, Any]]:
        for row in self.conn.execute(f"SELECT {','.join(JUDGE_COLUMNS)} FROM judgments ORDER BY key, judge"):
            yield dict(zip(JUDGE_COLUMNS, row))

    def errors(self) -> list[dict[str, Any]]:
        return [dict(zip(("key", "stage", "message", "created"), r))
                for r in self.conn.execute("SELECT * FROM errors ORDER BY created")]

    def count(self, table: str = "generations") -> int:
        if table not in ("generations", "judgments", "errors", "attacked"):
            raise ValueError(table)
        return self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    # --- merging shards --------------------------------------------------------------------------
    def merge_from(self, other: str | Path) -> int:
        """Copy every generation and judgment of another store that this one lacks (by key)."""
        before = self.count()
        # ATTACH is not allowed inside a transaction: attach, copy in one transaction, detach.
        self.conn.execute("ATTACH DATABASE ? AS shard", (str(other),))
        try:
            with self._tx():
                self.conn.execute(
                    f"INSERT OR IGNORE INTO generations SELECT {','.join(GEN_COLUMNS)} FROM shard.generations")
                self.conn.execute(
                    f"INSERT OR IGNORE INTO judgments SELECT {','.join(JUDGE_COLUMNS)} FROM shard.judgments")
                has_attacked = self.conn.execute(
                    "SELECT 1 FROM shard.sqlite_master WHERE type='table' AND name='attacked'").fetchone()
                if has_attacked:  # shards written before the attack stage have none
                    self.conn.execute("INSERT OR IGNORE INTO attacked SELECT * FROM shard.attacked")
        finally:
            self.conn.execute("DETACH DATABASE shard")
        return self.count() - before


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
