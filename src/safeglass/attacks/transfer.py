"""Transfer: adversarial images another run stored, replayed on other targets (a black-box attack).

A gradient attack (``pgd``, ``apgd``) made against one target is stored by its run's attack stage: the attacked
sample in the store's ``attacked`` table, its images as PNG under ``images/``. ``transfer`` reads them back and
attaches, to each sample of this run, the stored images of the sample with the same id, so that any target
(a black-box API one included) can be tested on images made against another model. The text stays as this run's
dataset gives it: what transfers is the image.

Run the source with the same dataset (ids are per dataset record). The attack stage is an earlier stage than the
run store's code, so the store is read here with ``sqlite3`` directly; its table and file names are those of
``eval/store.py`` and ``eval/runner.py``.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from safeglass.attacks.base import Attack
from safeglass.hashing import content_hash
from safeglass.types import ImageRef, Sample, Turn

# eval/runner.py's names for a run's store, its workers' shards and its saved images
STORE_NAME, SHARD_DIR, IMAGE_DIR = "store.sqlite", "shards", "images"


class TransferAttack(Attack):
    """Replays the adversarial images another run stored (for the same sample ids) onto this run's samples.

    Args:
        from_run: the run folder whose stored attacked samples are replayed (its ``store.sqlite`` and ``images/``).
        attack: the id, in that run, of the attack whose images are taken (e.g. ``pgd``).
        from_target: the target id, in that run, whose images are taken, for a white-box attack that ran on several
            targets (unset: the run's only one).
    """

    name = "transfer"
    access = "black-box"

    def __init__(self, from_run: str, attack: str = "pgd", from_target: str | None = None) -> None:
        self.from_run, self.attack, self.from_target = Path(from_run), str(attack), from_target
        self.records = self._read()
        # the source's images by content, not its folder: a moved run gives the same key, a re-run new ones
        self.source = content_hash(sorted((sid, _hashes(rec)) for sid, rec in self.records.items()))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "attack": self.attack, "from_target": self.from_target, "source": self.source}

    def apply(self, sample: Sample, target: Any = None) -> Sample:
        record = self.records.get(sample.id)
        if record is None:
            raise KeyError(f"transfer: run {self.from_run} stored no sample {sample.id!r} under attack "
                           f"{self.attack!r} (run the source on the same dataset)")
        stored = [[self._image(i) for i in t.get("images", [])] for t in record["turns"]]
        turns = list(sample.turns)
        if len(stored) == len(turns):  # same conversation shape: each turn takes its stored images
            turns = [Turn(t.role, t.text, tuple(imgs)) for t, imgs in zip(turns, stored, strict=True)]
        else:  # a reshaped conversation: every stored image on the last user turn
            last = max(i for i, t in enumerate(turns) if t.role == "user")
            turns[last] = Turn(turns[last].role, turns[last].text, tuple(i for imgs in stored for i in imgs))
        meta = {k: v for k, v in (record.get("metadata") or {}).items() if k.startswith("attack_")}
        meta["transfer"] = {"from_run": str(self.from_run), "attack": self.attack, "from_target": self.from_target,
                            "images": _hashes(record)}
        return sample.with_turns(tuple(turns), metadata={**sample.metadata, **meta})

    def _image(self, rec: dict[str, Any]) -> ImageRef:
        ref = Path(rec["ref"])
        path = self.from_run / IMAGE_DIR / ref.name  # found where the run is now, even if it was moved
        if not path.exists():
            path = ref
        if not path.exists():
            raise FileNotFoundError(f"transfer: image {ref.name} of run {self.from_run} is missing")
        img = ImageRef(path.read_bytes())  # by content: this run saves its own copy, the source may go
        if rec.get("hash") and img.content_hash() != rec["hash"]:
            raise ValueError(f"transfer: image {path} changed since run {self.from_run} stored it")
        return img

    def _read(self) -> dict[str, dict[str, Any]]:
        """The stored record of each sample id, from the run's store and its workers' shards."""
        stores = [self.from_run / STORE_NAME, *sorted((self.from_run / SHARD_DIR).glob("shard-*.sqlite"))]
        stores = [p for p in stores if p.exists()]
        if not stores:
            raise ValueError(f"transfer: {self.from_run} is not a run folder (no {STORE_NAME})")
        rows: list[tuple[str, str]] = []
        attacks: set[str] = set()
        targets: set[str] = set()
        for p in stores:
            with closing(sqlite3.connect(p)) as conn:
                attacks |= {a for (a,) in conn.execute("SELECT DISTINCT attack FROM attacked")}
                targets |= {t for (t,) in conn.execute("SELECT DISTINCT target FROM generations WHERE attack = ?",
                                                      (self.attack,))}
                if self.from_target is None:
                    rows += conn.execute("SELECT sample_id, record FROM attacked WHERE attack = ?",
                                         (self.attack,)).fetchall()
                else:  # the attacked table does not name the target: the replies to that target's samples do
                    rows += conn.execute("SELECT sample_id, sample FROM generations WHERE attack = ? AND target = ?",
                                         (self.attack, self.from_target)).fetchall()
        if not rows:
            where = f" for target {self.from_target!r} (its targets: {', '.join(sorted(targets)) or 'none'})" \
                if self.from_target is not None else f" (its attacks: {', '.join(sorted(attacks)) or 'none'})"
            raise ValueError(f"transfer: run {self.from_run} stored no sample under attack {self.attack!r}{where}")
        found: dict[str, dict[str, Any]] = {}
        ambiguous = set()
        for sid, text in rows:
            record = json.loads(text)
            if sid in found and _hashes(found[sid]) != _hashes(record):
                ambiguous.add(sid)
            found.setdefault(sid, record)
        if ambiguous:
            raise ValueError(f"transfer: run {self.from_run} stored different images for {len(ambiguous)} sample(s) "
                             f"under attack {self.attack!r} (a white-box attack on several targets): set from_target "
                             f"to one of {', '.join(sorted(targets))}")
        if not any(_hashes(r) for r in found.values()):
            raise ValueError(f"transfer: attack {self.attack!r} of run {self.from_run} stored no image to transfer")
        return found


def _hashes(record: dict[str, Any]) -> list[str]:
    return [i.get("hash", "") for t in record.get("turns", []) for i in t.get("images", [])]
