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

from safeglass.config import ComponentSpec, RunConfig
from safeglass.data.dataset import Dataset
from safeglass.data.sample import Sample, conversation_key
from safeglass.hashing import content_hash
from safeglass.registry import registry
from safeglass.targets.base import GenerationParams


@dataclass(frozen=True)
class WorkItem:
    key: str
    target: str
    dataset: str
    defense: str
    attack: str
    sample: Sample
    sample_index: int = 0  # which of the prompt's k completions this item is

    def shard(self, world: int) -> int:
        """Stable owner rank: depends on the key only, so any worker count splits the same plan."""
        return int(self.key[:12], 16) % world


@dataclass
class Plan:
    config: RunConfig
    items: list[WorkItem]
    datasets: dict[str, Dataset]
    defenses: dict[str, Any]
    attacks: dict[str, Any]
    component_configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_shard(self, rank: int, world: int) -> list[WorkItem]:
        if not 0 <= rank < world:
            raise ValueError(f"shard rank {rank} is outside 0..{world - 1}")
        return [it for it in self.items if it.shard(world) == rank]

    def params_for(self, item: WorkItem) -> GenerationParams:
        """The generation parameters of one item: the run's, with the item's own sampling seed."""
        return params_for_index(self.config.generation, item.sample_index)


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


def load_dataset(spec: ComponentSpec, limit: int | None = None) -> Dataset:
    loader = registry("datasets").get(spec.name)
    n = min(x for x in (spec.limit, limit) if x is not None) if (spec.limit or limit) is not None else None
    ds = loader(limit=n, **spec.args)
    if not isinstance(ds, Dataset):
        raise TypeError(f"dataset loader '{spec.name}' returned {type(ds).__name__}, not a Dataset")
    ds.name = spec.id
    return ds.head(n)


def build_plan(config: RunConfig, limit: int | None = None) -> Plan:
    datasets = {d.id: load_dataset(d, limit) for d in config.datasets}
    defenses = {d.id: registry("defenses").build(d.name, **d.args) for d in config.defenses}
    attacks = {a.id: registry("attacks").build(a.name, **a.args) for a in config.attacks}
    params = config.generation.to_dict()
    k = config.samples_per_prompt
    target_cfgs = {t.id: t.key_config() for t in config.targets}
    attack_specs = {a.id: a for a in config.attacks}
    items: list[WorkItem] = []
    for t in config.targets:
        for defense_id, defense in defenses.items():
            for attack_id, attack in attacks.items():
                for ds_id, ds in datasets.items():
                    if not attack_specs[attack_id].applies_to(t.id, ds_id):
                        continue
                    for s in ds.samples:
                        for j in range(k):
                            key = item_key(s, ds_id, target_cfgs[t.id], defense.config(), attack.config(), params, j)
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
        **{f"defense:{k}": d.config() for k, d in defenses.items()},
        **{f"attack:{k}": a.config() for k, a in attacks.items()},
        **{f"dataset:{k}": ds.provenance for k, ds in datasets.items()},
    }
    return Plan(config, unique, datasets, defenses, attacks, configs)
