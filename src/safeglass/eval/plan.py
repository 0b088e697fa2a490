"""From a RunConfig to the list of work items, each with the key that identifies its result.

Building a plan loads datasets and instantiates defenses and attacks (cheap), never targets: keys use
the target's spec, so a finished run is recognised without loading a model.

With ``generation.samples_per_prompt = k`` every prompt becomes k items, sample index 0..k-1. Index 0
keeps the key and the seed a k=1 run gives the prompt (so raising k reuses finished completions);
index j > 0 adds j to the key and samples with its own seed, :func:`sample_seed`. Generate each item
with :meth:`Plan.params_for` so that the k completions differ and a rerun reproduces them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from safeglass.attacks.base import ACCESS
from safeglass.config import ComponentSpec, ConfigError, RunConfig
from safeglass.data.dataset import Dataset
from safeglass.data.errors import RecordError, SkippedRecordsError
from safeglass.hashing import content_hash
from safeglass.options import OptionError, UnknownOptionError
from safeglass.registry import RUN_KINDS, UnknownComponentError, registry
from safeglass.types import GenerationParams, Sample, conversation_key


@dataclass(frozen=True)
class WorkItem:
    key: str
    target: str
    dataset: str
    defense: str
    attack: str
    sample: Sample
    sample_index: int = 0  # which of the prompt's k completions this item is


@dataclass
class Plan:
    config: RunConfig
    items: list[WorkItem]
    datasets: dict[str, Dataset]
    defenses: dict[str, Any]
    attacks: dict[str, Any]
    component_configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def chunks(self, rank: int = 0, world: int = 1) -> list[list[WorkItem]]:
        """The plan's chunks that worker ``rank`` of ``world`` owns, in plan order.

        A chunk is one call of one defense and attack on one target with one set of generation parameters
        (a sample index samples with its own seed), so it never mixes those. Chunks are cut from the whole
        plan, whatever is already done and whatever the worker count, and a worker owns whole chunks
        (:func:`chunk_owners`, a function of the plan and the worker count only): every number of workers, and
        every kill and resume, batches the same prompts together. That matters because a batch's make-up can
        change what a model writes in reduced precision (padding changes the shapes the kernels sum over).
        Within a group, prompts are ordered by length, so that a batch pads little.
        """
        if not 0 <= rank < world:
            raise ValueError(f"shard rank {rank} is outside 0..{world - 1}")
        chunks = chunk_items(self.items, self.config.chunk_size)
        owners = chunk_owners(chunks, world, self.config.generation.max_new_tokens)
        return [c for c, owner in zip(chunks, owners, strict=True) if owner == rank]

    def for_shard(self, rank: int, world: int) -> list[WorkItem]:
        return [it for c in self.chunks(rank, world) for it in c]

    def params_for(self, item: WorkItem) -> GenerationParams:
        """The generation parameters of one item: the run's, with the item's own sampling seed."""
        return params_for_index(self.config.generation, item.sample_index)

    def skipped(self) -> dict[str, list[RecordError]]:
        """The bad records each dataset skipped while loading, by dataset id (only datasets that skipped any)."""
        return {name: list(ds.report.errors) for name, ds in self.datasets.items() if ds.report.errors}


def skipped_line(skipped: dict[str, list[RecordError]]) -> str:
    """How many records were skipped, where, and the first reason: one line for the end of a run."""
    total = sum(len(errs) for errs in skipped.values())
    where = ", ".join(f"{name} {len(errs)}" for name, errs in skipped.items())
    first = next(iter(skipped.values()))[0]
    return f"skipped {total} bad record{'s' if total != 1 else ''} ({where}); the first: {first}"


def check_skipped(plan: Plan, fail: bool) -> None:
    """With ``fail`` (``--fail-on-skipped``), a skipped record stops the run before anything is generated."""
    skipped = plan.skipped()
    if fail and skipped:
        lines = [str(e) for errs in skipped.values() for e in errs]
        more = f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""
        raise SkippedRecordsError(f"{plan.config.source}: {skipped_line(skipped)}; stopping because of "
                                  "--fail-on-skipped:\n  " + "\n  ".join(lines[:20]) + more)


def chunk_items(items: list[WorkItem], size: int) -> list[list[WorkItem]]:
    """Items cut into chunks of at most ``size`` that share target, defense, attack, dataset and sample index (see
    :meth:`Plan.chunks`); ordered by prompt length, then key, so the cut depends on the plan only.

    The dataset is part of the group because replies within one set tend to be alike in length: a batch ends when
    its longest reply does, so a batch of harmful requests that a model refuses in a dozen tokens stops early
    instead of waiting for the 48-token answers to the benign prompts mixed into it."""
    groups: dict[tuple[str, str, str, str, int], list[WorkItem]] = {}
    for it in items:
        groups.setdefault((it.target, it.defense, it.attack, it.dataset, it.sample_index), []).append(it)
    out = []
    for group in groups.values():
        group = sorted(group, key=lambda it: (len(it.sample.prompt), it.key))
        out += [group[i:i + max(1, size)] for i in range(0, len(group), max(1, size))]
    return out


def chunk_owners(chunks: list[list[WorkItem]], world: int, new_tokens: int = 64) -> list[int]:
    """The worker that owns each chunk: per target, the largest chunks first, each to the least loaded worker.

    Workers go through the targets in the same order and the run ends with its slowest worker, so each target's
    work is split evenly; a chunk's weight is the tokens it costs, roughly (its prompts' characters / 4 and the
    new tokens of each). Owning chunks by the hash of their first key, as before, left workers uneven (120 / 92 /
    88 items over 3 workers in the plan of tests/test_resume_and_shards.py). Depends on the plan and the worker
    count only, so every worker, and every resume, finds the same owners."""
    owners = [0] * len(chunks)
    by_target: dict[str, list[int]] = {}
    for i, c in enumerate(chunks):
        by_target.setdefault(c[0].target, []).append(i)
    for indices in by_target.values():
        weight = {i: sum(len(it.sample.prompt) // 4 + new_tokens for it in chunks[i]) for i in indices}
        load = [0] * world
        for i in sorted(indices, key=lambda i: (-weight[i], chunks[i][0].key)):
            rank = min(range(world), key=lambda r: (load[r], r))
            owners[i] = rank
            load[rank] += weight[i]
    return owners


def sample_seed(base: int, sample_index: int) -> int:
    """The sampling seed of completion ``sample_index`` of a prompt.

    Index 0 keeps ``base``: a k=1 run is unchanged. Other indices hash (base, index) rather than add:
    with base + j, runs at seeds 0 and 1 would share k-1 of their k completions per prompt, and
    repeating a run over seeds would understate its variance.
    """
    if sample_index == 0:
        return base
    return int(content_hash({"seed": base, "sample_index": sample_index}, length=8), 16)


def params_for_index(params: GenerationParams, sample_index: int) -> GenerationParams:
    if sample_index == 0:
        return params
    return replace(params, seed=sample_seed(params.seed, sample_index))


def item_key(sample: Sample, dataset: str, target_cfg: dict[str, Any], defense_cfg: dict[str, Any],
             attack_cfg: dict[str, Any], params: dict[str, Any], sample_index: int = 0) -> str:
    payload: dict[str, Any] = {
        "sample": {"id": sample.id, "dataset": dataset, "turns": conversation_key(sample.turns), "kind": sample.kind},
        "target": target_cfg, "defense": defense_cfg, "attack": attack_cfg, "params": params,
    }
    if sample_index:  # absent for index 0, so that k=1 keys are those of runs made before k existed
        payload["sample_index"] = sample_index
    return content_hash(payload, length=32)


def with_sample_index(sample: Sample, sample_index: int, k: int) -> Sample:
    """The sample tagged with its completion index, which the store keeps in the sample record for the
    metrics (metadata is not part of the key)."""
    return replace(sample, metadata={**sample.metadata, "sample_index": sample_index, "samples_per_prompt": k})


def check_options(config: RunConfig) -> None:
    """Every component's args against what it takes, before any dataset or model loads: a typo in an option
    names the file, the component and the known options, and a value not of the option's declared type
    (``delay_s: soon``) names the option, rather than either ending in a traceback later. All the problems of a
    config are reported at once (UnknownOptionError when an option is unknown or missing), an unknown component
    name with the file and entry it is in."""
    unknown, values = [], []
    unknown_names = False
    for kind in RUN_KINDS:
        for i, spec in enumerate(getattr(config, kind)):
            what = f"{config.source}: {kind}[{i}] ({spec.name}{'' if spec.id == spec.name else f', id {spec.id}'})"
            checks = [(kind, spec, what)] + [("modifiers", m, f"{what} modifiers[{j}] ({m.name})")
                                             for j, m in enumerate(spec.modifiers)]
            for k, s, where in checks:
                reg = registry(k)
                try:
                    reg.check(s.name, s.args, where)
                except UnknownOptionError as exc:
                    unknown.append(str(exc))
                except UnknownComponentError as exc:  # the registry knows the name, not the file it came from
                    unknown_names = True
                    unknown.append(f"{where}: {exc}")
                    continue
                values += reg.options(s.name).value_problems(s.args, where)
    if unknown or values:
        error = UnknownComponentError if unknown_names else UnknownOptionError if unknown else OptionError
        raise error("\n".join(unknown + values))


def load_dataset(spec: ComponentSpec, limit: int | None = None) -> Dataset:
    registry("datasets").check(spec.name, spec.args, f"dataset '{spec.id}'")
    loader = registry("datasets").get(spec.name)
    n = min(x for x in (spec.limit, limit) if x is not None) if (spec.limit or limit) is not None else None
    ds = loader(limit=n, **spec.args)
    if not isinstance(ds, Dataset):
        raise TypeError(f"dataset loader '{spec.name}' returned {type(ds).__name__}, not a Dataset")
    ds.name = spec.id
    return ds.head(n)


def defense_key(defense: Any) -> dict[str, Any]:
    """A defense's config with the identity of every judge and helper target it uses (absent when it uses
    none, so that the keys of defenses made before contexts existed stay the same)."""
    cfg = defense.config()
    uses = defense.uses() if hasattr(defense, "uses") else []
    if not uses:
        return cfg
    return {**cfg, "uses": [{"role": u.role, **component_key(u)} for u in uses]}


def component_key(uses: Any) -> dict[str, Any]:
    """The key of a judge or helper target a defense uses (a ``Uses``): name and args, weights by content."""
    return ComponentSpec(uses.kind, uses.name, uses.name, dict(uses.args)).key_config()


def check_uses(config: RunConfig, defenses: dict[str, Any]) -> None:
    """The judges and helper targets each defense uses, checked as the config's own components are, before any
    model loads: a registered name, options it takes, and a catalog tag it needs (an output filter's judge must
    measure harm or toxicity). All the problems at once, as a config error."""
    problems = []
    for i, spec in enumerate(config.defenses):
        uses = defenses[spec.id].uses() if hasattr(defenses[spec.id], "uses") else []
        for u in uses:
            what = f"{config.source}: defenses[{i}] ({spec.id}) {u.where or u.role or u.kind}"
            try:
                registry(u.kind).check(u.name, dict(u.args), f"{what} ({u.name})")
            except (KeyError, UnknownOptionError) as exc:
                problems.append(str(exc))
                continue
            tags = registry(u.kind).entry(u.name).tags
            if u.needs and tags and not set(u.needs) & set(tags):  # a user's own component carries no tags
                problems.append(f"{what}: {u.name} measures {', '.join(tags) or 'nothing tagged'}; it needs one that "
                                f"measures {' or '.join(u.needs)}")
    if problems:
        raise UnknownOptionError("\n".join(problems))


def check_access(config: RunConfig, attacks: dict[str, Any]) -> None:
    """A white-box attack needs a target it can look inside: refused at plan time, before anything loads, for
    targets the catalog marks black-box (endpoints, llama.cpp)."""
    problems = []
    for i, spec in enumerate(config.attacks):
        access = getattr(attacks[spec.id], "access", "black-box")
        if access not in ACCESS:
            problems.append(f"{config.source}: attacks[{i}] ({spec.id}): access {access!r} is not one of "
                            f"{', '.join(ACCESS)}")
            continue
        if access != "white-box":
            continue
        for t in config.targets:
            if spec.only_targets and t.id not in spec.only_targets:
                continue
            if "black-box" in registry("targets").entry(t.name).tags:
                problems.append(f"{config.source}: attacks[{i}] ({spec.id}) is white-box (it needs gradients or "
                                f"log-likelihoods) but target {t.id} ({t.name}) is black-box; restrict the attack "
                                "with 'targets: [...]'")
    if problems:
        raise ConfigError("\n".join(problems))


def build_plan(config: RunConfig, limit: int | None = None) -> Plan:
    check_options(config)
    datasets = {d.id: load_dataset(d, limit) for d in config.datasets}
    defenses = {d.id: registry("defenses").build(d.name, **d.args) for d in config.defenses}
    attacks = {a.id: registry("attacks").build(a.name, **a.args) for a in config.attacks}
    check_uses(config, defenses)
    check_access(config, attacks)
    params = config.generation.to_dict()
    k = config.samples_per_prompt
    target_cfgs = {t.id: t.key_config() for t in config.targets}
    defense_cfgs = {i: defense_key(d) for i, d in defenses.items()}
    attack_specs = {a.id: a for a in config.attacks}
    items: list[WorkItem] = []
    for t in config.targets:
        for defense_id in defenses:
            for attack_id, attack in attacks.items():
                for ds_id, ds in datasets.items():
                    if not attack_specs[attack_id].applies_to(t.id, ds_id, defense_id):
                        continue
                    for s in ds.samples:
                        for j in range(k):
                            key = item_key(s, ds_id, target_cfgs[t.id], defense_cfgs[defense_id], attack.config(),
                                           params, j)
                            tagged = s if k == 1 else with_sample_index(s, j, k)
                            items.append(WorkItem(key, t.id, ds_id, defense_id, attack_id, tagged, j))
    seen: set[str] = set()
    unique = []
    for it in items:  # duplicate samples within a dataset would otherwise be generated twice
        if it.key not in seen:
            seen.add(it.key)
            unique.append(it)
    configs = {
        **{f"target:{k}": v for k, v in target_cfgs.items()},
        **{f"defense:{k}": v for k, v in defense_cfgs.items()},
        **{f"attack:{k}": a.config() for k, a in attacks.items()},
        **{f"dataset:{k}": ds.provenance for k, ds in datasets.items()},
    }
    return Plan(config, unique, datasets, defenses, attacks, configs)
