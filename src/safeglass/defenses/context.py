"""What a defense may use at generation time: the defended model, judges and helper targets by name, a cache,
and a trace of every sub-call it makes.

Built by the runner once per target (``Defense.setup(ctx)``), never at plan time: a ``--dry-run`` or a worker
that finds its chunks done loads nothing. Judges and helpers are built through the registry and shared by all
the defenses of a run in one process; what a defense declares in ``uses()`` enters its result key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from safeglass.types import Conversation, Generation, GenerationParams, ImageRef, Sample, Target


@dataclass(frozen=True)
class Uses:
    """A component a defense needs: ``kind`` "judges" or "targets", a registry name and its args. ``role``
    names it in traces ("judge", "rewriter", ...). ``needs``: catalog tags one of which the component must
    carry (a judge's measure, say), checked at plan time with its options; ``where`` names the option it came
    from in those errors."""

    kind: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    role: str = ""
    needs: tuple[str, ...] = ()
    where: str = ""

    @staticmethod
    def parse(value: Any, kind: str, role: str, where: str, needs: tuple[str, ...] = ()) -> Uses:
        """A name or ``{name, args}`` from a defense's option."""
        if isinstance(value, str):
            return Uses(kind, value, {}, role, needs, where)
        if isinstance(value, dict) and isinstance(value.get("name"), str) and set(value) <= {"name", "args"}:
            return Uses(kind, value["name"], dict(value.get("args") or {}), role, needs, where)
        raise ValueError(f"{where}: give a registry name or {{name, args}}, not {value!r}")


def conversation_record(conv: Conversation, save: Callable[[ImageRef], Any] | None = None,
                        own: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """What was sent, as the report shows it: roles, text, images by content hash. An image that is not among
    the sample's own (hashes in `own`), such as a defense's perturbed copy, is handed to `save` (the runner
    stores it with the run, content-addressed) and listed under the turn's ``saved``, so the report can show it."""
    out = []
    for t in conv:
        hashes = [i.content_hash() for i in t.images]
        turn: dict[str, Any] = {"role": t.role, "text": t.text, "images": hashes}
        made = [(h, i) for h, i in zip(hashes, t.images, strict=True) if h not in own]
        if save is not None and made:
            for _, img in made:
                save(img)
            turn["saved"] = list(dict.fromkeys(h for h, _ in made))
        out.append(turn)
    return out


class Stage:
    """A defense in front of a target, seen as a target by the defense before it in a chain."""

    def __init__(self, defense: Any, inner: Target) -> None:
        self.defense = defense
        self.inner = inner
        self.name = f"{defense.name} > {getattr(inner, 'name', 'target')}"

    def config(self) -> dict[str, Any]:
        return {"defense": self.defense.config(), "inner": self.inner.config()}

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[Generation]:
        """Outside a context (no samples known): each conversation becomes a sample of its own."""
        samples = [Sample(f"stage-{i}", tuple(c)) for i, c in enumerate(conversations)]
        return self.defense.generate(self.inner, samples, params)


class DefenseContext:
    """One target's generation context. ``begin(samples)`` starts a batch; ``traces[i]`` then lists the sub-calls
    made for its i-th sample, which the runner stores with the reply."""

    def __init__(self, target: Target, build: Callable[[Uses], Any], cache: dict[Any, Any] | None = None,
                 save_image: Callable[[ImageRef], Any] | None = None, *, artifacts: Path | None = None,
                 target_key: dict[str, Any] | None = None, key_of: Callable[[Uses], Any] | None = None) -> None:
        self.target = target
        self._build = build
        # Where a defense's trained artifacts go (``artifacts.build_once`` root): the run's folder, which every
        # worker and resume of the run reads; None (outside a run) is the shared cache.
        self.artifacts = artifacts
        # The defended target's result key (its name, args, weights by content, modifiers), which keys what a
        # defense trains on it; outside a run its ``config()`` stands in.
        self.target_key = target_key
        self._key_of = key_of
        # Stores an image a defense made (not the sample's own) with the run; None outside a run: hashes only.
        self._save_image = save_image
        self.cache: dict[Any, Any] = cache if cache is not None else {}
        self.traces: list[list[dict[str, Any]]] = []
        # (samples of this level, their positions in the batch): a chain's inner stage sees its own samples
        self._frames: list[tuple[list[Sample], list[int]]] = []

    def begin(self, samples: Sequence[Sample]) -> None:
        self.traces = [[] for _ in samples]
        self._frames = [(list(samples), list(range(len(samples))))]

    def identity(self, uses: Uses) -> Any:
        """What identifies a judge or helper target `uses` names, as it enters result keys (weights by content where
        the catalog has a keyer); outside a run, its name and args."""
        if self._key_of is not None:
            return self._key_of(uses)
        return {"name": uses.name, "args": dict(uses.args)}

    def defended_key(self) -> dict[str, Any]:
        """The defended target's identity: its result key in a run, its ``config()`` outside one."""
        if self.target_key is not None:
            return self.target_key
        return {"config": self.target.config()}

    def component(self, uses: Uses) -> Any:
        """The judge or helper target `uses` names, built once and shared."""
        key = ("component", uses.kind, uses.name, repr(sorted(uses.args.items())))
        if key not in self.cache:
            self.cache[key] = self._build(uses)
        return self.cache[key]

    def generate(self, role: str, target: Target, conversations: Sequence[Conversation], params: GenerationParams,
                 owners: Sequence[int] | None = None) -> list[Generation]:
        """`target.generate`, traced: each conversation is recorded under the sample it was made for
        (``owners[j]``, a position in this level's samples; by default the j-th)."""
        owners = list(range(len(conversations))) if owners is None else list(owners)
        if isinstance(target, Stage):
            return self._through_stage(target, conversations, params, owners)
        t0 = time.perf_counter()
        gens = target.generate(list(conversations), params)
        seconds = time.perf_counter() - t0
        for j, (conv, gen) in enumerate(zip(conversations, gens, strict=True)):
            sent = conversation_record(conv, self._save_image, self._own_images(owners[j]))
            self.record(owners[j], {"role": role, "sent": sent, "reply": gen.text,
                                    "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                                    "seconds": round(gen.seconds or seconds / max(1, len(gens)), 4)})
        return gens

    def _through_stage(self, stage: Stage, conversations: Sequence[Conversation], params: GenerationParams,
                       owners: list[int]) -> list[Generation]:
        samples, positions = self._frames[-1] if self._frames else ([], [])
        inner = [replace(samples[o], turns=tuple(c)) if o < len(samples) else Sample(f"stage-{j}", tuple(c))
                 for j, (c, o) in enumerate(zip(conversations, owners, strict=True))]
        self._frames.append((inner, [positions[o] if o < len(positions) else -1 for o in owners]))
        try:
            return stage.defense.generate(stage.inner, inner, params)
        finally:
            self._frames.pop()

    @contextmanager
    def part(self, indices: Sequence[int]) -> Iterator[None]:
        """Within it, this level's samples are those at `indices` only: a defense that hands a subset of its batch to
        another (``adaptive``, one configuration per group) keeps each sub-call under the sample it was made for."""
        if not self._frames:  # outside a batch nothing is traced: nothing to map
            yield
            return
        samples, positions = self._frames[-1]
        self._frames.append(([samples[i] for i in indices], [positions[i] for i in indices]))
        try:
            yield
        finally:
            self._frames.pop()

    def judge(self, role: str, uses: Uses, items: Sequence[Any], owners: Sequence[int] | None = None) -> list[Any]:
        """The judge `uses` names over JudgeInputs, traced (verdicts, seconds)."""
        judge = self.component(uses)
        owners = list(range(len(items))) if owners is None else list(owners)
        t0 = time.perf_counter()
        verdicts = judge.judge(list(items))
        seconds = (time.perf_counter() - t0) / max(1, len(items))
        for j, v in enumerate(verdicts):
            self.record(owners[j], {"role": role, "judge": uses.name, "flag": bool(v.flag),
                                    "score": float(v.score), "seconds": round(seconds, 4)})
        return verdicts

    def record(self, owner: int, entry: dict[str, Any]) -> None:
        """Add `entry` to the trace of this level's sample `owner` (mapped to its place in the batch)."""
        top = self._top(owner)
        if 0 <= top < len(self.traces):
            self.traces[top].append(entry)

    def _top(self, owner: int) -> int:
        """The batch position of this level's sample `owner`; -1 when it has none."""
        positions = self._frames[-1][1] if self._frames else []
        return positions[owner] if 0 <= owner < len(positions) else -1

    def _own_images(self, owner: int) -> frozenset[str]:
        """Hashes of the images of the batch sample `owner` stands for: the runner already stored those (attacked
        images) or they are the dataset's files, so only other images a defense sends are saved."""
        top = self._top(owner)
        if self._save_image is None or not self._frames or not 0 <= top < len(self._frames[0][0]):
            return frozenset()
        return frozenset(i.content_hash() for t in self._frames[0][0][top].turns for i in t.images)
