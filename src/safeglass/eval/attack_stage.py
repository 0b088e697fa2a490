"""The attack stage: every (sample, attack config) is attacked once, before any defense, and stored.

A black-box attack's result is shared by every target and defense; a white-box one (gradients through the
target) is keyed by the target too and runs once the target has loaded. Resumes and later defenses read the
stored sample (images saved under the run directory), so an attack never runs twice for the same key, and a
fresh run and a resumed one hand the model exactly the same input.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from safeglass.eval.plan import Plan, WorkItem
from safeglass.eval.store import Store
from safeglass.hashing import content_hash
from safeglass.types import Sample, conversation_key

log = logging.getLogger("safeglass.run")

# Per-item tags the plan adds (k completions of a prompt); one attacked sample serves them all.
ITEM_TAGS = ("sample_index", "samples_per_prompt")


def is_stored(attack: Any) -> bool:
    """Whether an attack's output is worth storing: the identity attack ("none") is not."""
    return getattr(attack, "stored", True)


def attack_key(item: WorkItem, plan: Plan) -> str:
    attack = plan.attacks[item.attack]
    payload: dict[str, Any] = {
        "sample": {"id": item.sample.id, "dataset": item.dataset, "turns": conversation_key(item.sample.turns),
                   "kind": item.sample.kind},
        "attack": attack.config(),
    }
    if getattr(attack, "access", "black-box") == "white-box":
        payload["target"] = plan.component_configs[f"target:{item.target}"]
    return content_hash(payload, length=32)


def attack_items(items: Sequence[WorkItem], plan: Plan, store: Store, stores: Iterable[Path], target: Any,
                 persist: Callable[[Sample], dict[str, Any]], batch_size: int = 32,
                 known: dict[str, str] | None = None) -> tuple[dict[str, Sample], dict[str, str]]:
    """(attacked sample by item key, error message by item key) for `items`, all of one access level. Records
    in `known` (this run's, by attack key: a black-box attack's serve every target) or stored (in `store` or any
    of `stores`) are read back; the rest are attacked in batches, stored and added to `known`."""
    out: dict[str, Sample] = {}
    errors: dict[str, str] = {}
    todo: dict[str, list[WorkItem]] = {}
    for it in items:
        attack = plan.attacks[it.attack]
        if not is_stored(attack):
            out[it.key] = it.sample
        else:
            todo.setdefault(attack_key(it, plan), []).append(it)
    known = {} if known is None else known
    records = {k: known[k] for k in todo if k in known}
    records.update(_stored_records(set(todo) - set(records), [store.path, *stores]))
    fresh = [k for k in todo if k not in records]
    by_attack: dict[str, list[str]] = {}
    for k in fresh:
        by_attack.setdefault(todo[k][0].attack, []).append(k)
    for attack_id, keys in by_attack.items():
        attack = plan.attacks[attack_id]
        for i in range(0, len(keys), batch_size):
            part = keys[i:i + batch_size]
            try:
                attacked = attack.apply_batch([_untagged(todo[k][0].sample) for k in part], target)
                if len(attacked) != len(part):
                    raise RuntimeError(f"attack returned {len(attacked)} samples for {len(part)}")
            except Exception as exc:  # one failing batch must not end the run: record, go on, retry on resume
                log.error("attack %s failed on %d samples (%s): %s", attack_id, len(part), type(exc).__name__, exc)
                for k in part:
                    for it in todo[k]:
                        errors[it.key] = f"{type(exc).__name__}: {exc}"
                continue
            rows = []
            for k, s in zip(part, attacked, strict=True):
                records[k] = json.dumps(persist(s), default=str, sort_keys=True)
                rows.append((k, attack_id, s.id, records[k]))
            store.add_attacked(rows)
    known.update(records)
    for k, its in todo.items():
        if k not in records:
            continue
        base = Sample.from_record(json.loads(records[k]))
        for it in its:
            tags = {t: it.sample.metadata[t] for t in ITEM_TAGS if t in it.sample.metadata}
            out[it.key] = replace(base, metadata={**base.metadata, **tags}) if tags else base
    return out, errors


def _untagged(sample: Sample) -> Sample:
    if not any(t in sample.metadata for t in ITEM_TAGS):
        return sample
    return replace(sample, metadata={k: v for k, v in sample.metadata.items() if k not in ITEM_TAGS})


def _stored_records(keys: set[str], paths: Sequence[Path]) -> dict[str, str]:
    found: dict[str, str] = {}
    for p in dict.fromkeys(paths):
        if keys - set(found) and Path(p).exists():
            with Store(p) as s:
                found.update(s.attacked(keys - set(found)))
    return found
