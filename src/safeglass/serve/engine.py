"""The served model: the target and its defense built as a run builds them, answering batches of requests in one
worker thread, each batch logged (optionally) to a run folder's store as a run stores its replies."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from safeglass.config import ConfigError
from safeglass.eval.plan import WorkItem, build_plan, item_key
from safeglass.eval.runner import (
    ARTIFACT_DIR,
    IMAGE_DIR,
    STORE_NAME,
    _safe_config,
    build_target,
    defended_generate,
    generation_rows,
    set_up_defenses,
    target_label,
    write_run_meta,
)
from safeglass.eval.store import Store
from safeglass.machine import machine_info
from safeglass.serve.config import REQUESTS_FILE, SERVED_DATASET, ServeConfig
from safeglass.types import Conversation, Generation, GenerationParams, Sample

log = logging.getLogger("safeglass.serve")


@dataclass
class Answer:
    generation: Generation
    trace: list[dict[str, Any]]

    @property
    def usage(self) -> tuple[int, int]:
        """(prompt, completion) tokens: the target's calls for this request when the defense traced them (a defense
        that calls the model twice costs both), else the reply's own counts."""
        calls = [t for t in self.trace if "prompt_tokens" in t]
        if calls:
            return (sum(int(t.get("prompt_tokens") or 0) for t in calls),
                    sum(int(t.get("completion_tokens") or 0) for t in calls))
        return self.generation.prompt_tokens, self.generation.completion_tokens


class Served:
    """One target behind one defense configuration. ``answer`` runs in the batcher's worker thread only (targets are
    not thread-safe; the store's SQLite connection belongs to that thread)."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.plan = build_plan(cfg.run)  # options and the defense's judges checked as a run's; nothing loads
        self.plan.component_configs[f"dataset:{SERVED_DATASET}"] = {"name": SERVED_DATASET, "server": cfg.model_id}
        self.spec = cfg.run.targets[0]
        self.defense_id = cfg.run.defenses[0].id
        self.log_dir = cfg.log_dir
        artifacts = self.log_dir / ARTIFACT_DIR if self.log_dir else None
        self.image_dir = self.log_dir / IMAGE_DIR if self.log_dir else None
        self.target = build_target(self.spec, artifacts)
        failed = set_up_defenses(self.plan, {self.defense_id}, self.target, {}, self.image_dir, artifacts=artifacts,
                                 target_key=self.spec.key_config())
        if failed:
            raise ConfigError(f"{cfg.source}: defense {self.defense_id}: set-up failed: {failed[self.defense_id]}")
        self.machine = machine_info() if "torch" in sys.modules else None
        self._store: Store | None = None
        self._keys: set[str] = set()

    def answer(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[Answer]:
        samples = [Sample(id=f"req-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:10]}",
                          turns=tuple(c), kind=self.cfg.schema.log_kind, category=SERVED_DATASET,
                          source=SERVED_DATASET) for c in conversations]
        gens, traces = defended_generate(self.plan.defenses[self.defense_id], self.target, samples, params)
        if self.log_dir is not None:
            try:
                self._log(samples, gens, traces, params)
            except Exception as exc:  # a full disk must not cost the client its reply; say so in the server's log
                log.error("could not log %d replies to %s (%s): %s", len(samples), self.log_dir,
                          type(exc).__name__, exc)
        return [Answer(g, list(t)) for g, t in zip(gens, traces, strict=True)]

    def _open_store(self) -> Store:
        assert self.log_dir is not None
        store = Store(self.log_dir / STORE_NAME)
        self._keys = store.plan_keys() or set()  # a restarted server keeps the replies it logged before
        write_run_meta(store, self.cfg.run, self.plan)
        store.set_meta("plan_keys", sorted(self._keys))
        tid = self.spec.id
        store.set_meta(f"target_config:{tid}", _safe_config(self.target))
        store.set_meta(f"target_label:{tid}", {"label": target_label(self.target, tid),
                                               "organism": bool(getattr(self.target, "organism", False))})
        if self.machine is not None:
            store.set_meta(f"target_machine:{tid}", self.machine)
        return store

    def _log(self, samples: list[Sample], gens: list[Generation], traces: list[Any], params: GenerationParams) -> None:
        if self._store is None:
            self._store = self._open_store()
        assert self.image_dir is not None and self.log_dir is not None
        cfgs = self.plan.component_configs
        items = [WorkItem(item_key(s, SERVED_DATASET, cfgs[f"target:{self.spec.id}"],
                                   cfgs[f"defense:{self.defense_id}"], self.plan.attacks["none"].config(),
                                   params.to_dict()),
                          self.spec.id, SERVED_DATASET, self.defense_id, "none", s) for s in samples]
        rows = generation_rows(self.plan, items, samples, gens, traces, params, "serve", self.image_dir, self.machine)
        self._store.add_generations(rows)
        self._keys.update(it.key for it in items)
        self._store.set_meta("plan_keys", sorted(self._keys))
        with open(self.log_dir / REQUESTS_FILE, "a", encoding="utf-8") as f:  # the requests again, as a dataset
            for row in rows:
                record = json.loads(row.sample)
                system = "\n\n".join(t["text"] for t in record["turns"] if t["role"] == "system")
                images = [i["ref"] for t in record["turns"] for i in t.get("images", [])]
                line = {"id": row.sample_id, "prompt": row.prompt, "system": system or None,
                        "image": images[0] if images else None}
                f.write(json.dumps(line, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


@dataclass
class _Pending:
    conversation: Conversation
    params: GenerationParams
    future: asyncio.Future[Answer]


class Batcher:
    """Concurrent requests queued and handed to ``answer`` in batches of requests with the same generation
    parameters: up to ``max_size``, waiting ``max_wait_ms`` after the first; the batch runs in one worker thread so
    the event loop keeps serving (and the queue fills while a batch generates)."""

    def __init__(self, answer: Callable[[Sequence[Conversation], GenerationParams], list[Answer]], max_size: int,
                 max_wait_ms: int, on_close: Callable[[], None] | None = None) -> None:
        self._answer = answer
        self.max_size, self.max_wait = max_size, max_wait_ms / 1000
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="safeglass-serve")
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_close = on_close
        self._lock = threading.Lock()

    async def submit(self, conversation: Conversation, params: GenerationParams) -> Answer:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._queue is None or self._task is None or self._task.get_loop() is not loop:
                self._queue = asyncio.Queue()
                self._task = loop.create_task(self._run())
        future: asyncio.Future[Answer] = loop.create_future()
        await self._queue.put(_Pending(conversation, params, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        queue, loop = self._queue, asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_size:
                try:
                    batch.append(queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except TimeoutError:
                    break
            groups: dict[GenerationParams, list[_Pending]] = {}
            for p in batch:
                groups.setdefault(p.params, []).append(p)
            for params, pending in groups.items():
                live = [p for p in pending if not p.future.cancelled()]  # a client that left costs nothing
                if not live:
                    continue
                try:
                    answers = await loop.run_in_executor(self._executor, self._answer,
                                                         [p.conversation for p in live], params)
                except Exception as exc:  # the batch's requests get the error; the server goes on
                    log.exception("generation failed for %d requests", len(live))
                    for p in live:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                for p, a in zip(live, answers, strict=True):
                    if not p.future.done():
                        p.future.set_result(a)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._on_close is not None:
            self._executor.submit(self._on_close).result()
        self._executor.shutdown(wait=True)

