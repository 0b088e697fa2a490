"""Run configuration: YAML in, a validated RunConfig out, with a content hash that names it.

A config lists targets x defenses x datasets x attacks x judges, generation parameters and a seed.
``generation.samples_per_prompt`` (k, default 1) asks for k sampled completions of every prompt, as
RealToxicityPrompts-style toxicity evaluation does (AurA: 25 completions a prompt). Each component is
a registry name, optionally with ``args``, an ``id`` (to run one component twice with different args)
and, for datasets, a ``limit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import Field, model_validator

from safeglass.hashing import content_hash
from safeglass.option_keys import NON_OUTPUT_ARGS
from safeglass.schema import Args, ConfigError, Number, Problem, Schema, did_you_mean, shown, validate
from safeglass.types import GenerationParams

# The lists of components, whose options may hold paths.
RUN_LISTS = ("targets", "datasets", "defenses", "attacks", "judges", "scorers")



@dataclass(frozen=True)
class ComponentSpec:
    kind: str
    name: str                      # registry name
    id: str                        # unique within its kind in this config
    args: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None       # datasets only
    # attacks only: the dataset and target ids it applies to (empty: all). A typographic attack has no meaning
    # for a text-only model, and a jailbreak template none on benign look-alikes.
    only_datasets: tuple[str, ...] = ()
    only_targets: tuple[str, ...] = ()
    # attacks only: the defense ids it is answered under (empty: all). An adaptive attack optimised through one
    # defense is meant for that defense (the defense study's adaptive PGD).
    only_defenses: tuple[str, ...] = ()
    # targets only: modifiers applied in order after the target loads (glasses, adapters, ...)
    modifiers: tuple[ComponentSpec, ...] = ()

    def applies_to(self, target_id: str, dataset_id: str, defense_id: str | None = None) -> bool:
        return ((not self.only_targets or target_id in self.only_targets)
                and (not self.only_datasets or dataset_id in self.only_datasets)
                and (defense_id is None or not self.only_defenses or defense_id in self.only_defenses))

    def key_config(self) -> dict[str, Any]:
        """What identifies this component's outputs (non-output args removed)."""
        args = {k: v for k, v in self.args.items() if k not in NON_OUTPUT_ARGS}
        if self.kind == "targets":
            args = target_dtype_key(self.name, args)
        args = weights_key_args(self.kind, self.name, args)
        if self.kind != "targets":
            return {"name": self.name, "args": args}
        listed = []
        for m in self.modifiers:
            key = modifier_key(m)
            if key["key_arg"]:
                args[key["key_arg"]] = key["key"]
            else:
                listed.append({"name": m.name, "key": key["key"]})
        return {"name": self.name, "args": args, **({"modifiers": listed} if listed else {})}


def modifier_key(spec: ComponentSpec) -> dict[str, Any]:
    """A modifier's key (torch-free, nothing loads) and the target argument it stands in for, if any."""
    from safeglass.registry import registry

    modifier = registry("modifiers").build(spec.name, **spec.args)
    try:
        key = modifier.key()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"modifier {spec.id}: {exc}") from None
    return {"key": key, "key_arg": getattr(modifier, "key_arg", None)}


def target_dtype_key(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A target's key args with its dtype as this machine resolves it: ``auto`` (the default of most targets)
    is bfloat16 on one machine and float32 on another, and the dtype changes replies. A float32 target whose
    args name no dtype keys as before dtypes resolved (float32 was the default then)."""
    from safeglass.machine import resolve_dtype
    from safeglass.options import REQUIRED
    from safeglass.registry import registry

    try:
        option = registry("targets").options(name).get("dtype")
    except (KeyError, ValueError, ImportError):
        return args
    if option is None:
        return args
    default = option.default.strip("'\"") if option.default != REQUIRED else "auto"
    resolved = resolve_dtype(args.get("dtype", default), args.get("device", "cpu"))
    if "dtype" in args or resolved != "float32":
        return {**args, "dtype": resolved}
    return args


WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".onnx")


def weights_key_args(kind: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A component's key args with its weights in by content: a rebuilt organism, a re-trained checkpoint or
    proxy head keeps its name or folder, and a resumed run must make its replies again rather than reuse the old
    ones. Components the catalog has a keyer for (organisms: the card's weights hashes, the folder leaving the
    key as glasses do; proxy judges: their files) use it. Another target's local model folder or file
    (``model``): name, size and a hash of the first and last MiB of each weights file, cheap enough for
    multi-GB checkpoints and the same on every machine (shards on several hosts must agree). Hub ids are left
    as they are: pin ``revision`` for that."""
    from safeglass.registry import registry

    keyer = registry(kind).keyer(name)
    if keyer is not None:
        keyed = keyer(name, args)
        return args if keyed is None else keyed
    model = args.get("model")
    if kind == "targets" and isinstance(model, str) and Path(model).exists():
        return {**args, "weights": _local_weights_key(Path(model))}
    return args


def _local_weights_key(path: Path) -> str:
    import hashlib

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.relative_to(path) if f != path else f.name}:{size}".encode())
        with f.open("rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                h.update(fh.read())
    return "files:" + h.hexdigest()[:16]


# Fields that change no output, so no result and not the config hash (base_dir: where the file's relative paths
# were read from, written into the copies a run makes of its config; primary_judge: the judge id the report's
# finding reads, chosen by calibration when unset).
_UNHASHED = ("chunk_size", "base_dir", "primary_judge")


@dataclass(frozen=True)
class RunConfig:
    name: str
    targets: tuple[ComponentSpec, ...]
    datasets: tuple[ComponentSpec, ...]
    defenses: tuple[ComponentSpec, ...]
    attacks: tuple[ComponentSpec, ...]
    judges: tuple[ComponentSpec, ...]
    generation: GenerationParams = GenerationParams()
    scorers: tuple[ComponentSpec, ...] = ()  # replies against the samples' references (accuracy)
    samples_per_prompt: int = 1    # k completions of each prompt; only the plan reads it
    seed: int = 0
    baseline_defense: str = "none"
    chunk_size: int = 32
    source: str = "<dict>"
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    base_dir: str | None = None  # where relative paths were read from (None: the working directory)

    def raw_with_base_dir(self) -> dict[str, Any]:
        """The config as given, plus the folder its relative paths were read from: a copy that is read again
        elsewhere (a worker's, the store's for re-judging) finds the same files."""
        return {**self.raw, "base_dir": str(Path(self.base_dir or Path.cwd()).resolve())}

    @property
    def readers(self) -> tuple[ComponentSpec, ...]:
        """What reads the stored replies: the judges, then the scorers."""
        return self.judges + self.scorers

    @property
    def hash(self) -> str:
        return content_hash({k: v for k, v in self.raw.items() if k not in _UNHASHED})


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; unreadable files and bad YAML become ConfigErrors naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


# --- the one reader of every config kind (run, neurons find, neurons eval, studies); each kind's schema checks it

# Option and field names whose string values are paths: resolved against the config file's folder. (image_root
# is not among them: it is relative to its data file, as the loaders document.)
PATH_KEYS = frozenset({"path", "prompt_file", "template_file", "rubric_file", "weights",
                       "weights_path", "tokenizer_path", "vectorizer_path", "model_path", "expertise", "jsonl",
                       "glasses", "model", "image_file", "image_dir", "from_run",
                       "selector_file"})


def read_config(path: str | Path) -> tuple[Any, str, Path]:
    """(content, source name, folder its relative paths are read from) of a config file of any kind; the
    kind's parser validates the content (:func:`safeglass.schema.validate`)."""
    path = Path(path)
    raw = read_yaml(path)
    base = raw.get("base_dir") if isinstance(raw, dict) else None
    return raw, str(path), Path(base) if isinstance(base, str) else path.resolve().parent


def resolve_path(value: str, base_dir: Path | None, *, must_exist: bool = False) -> str:
    """A relative path read against the config file's folder. Older configs meant the working directory: a
    path that exists only there keeps meaning it (with a warning). With ``must_exist`` (``model``, which may be
    a hub id), a path found in neither place is left as given."""
    p = Path(value).expanduser()
    if base_dir is None or p.is_absolute():
        return str(p) if value.startswith("~") else value
    beside = base_dir / p
    if beside.exists():
        return str(beside)
    if p.exists():
        import logging

        logging.getLogger("safeglass").warning(
            "%s is read from the working directory; config paths are relative to the config file (%s) now: "
            "write it relative to that folder", value, base_dir)
        return value
    return value if must_exist else str(beside)


def resolve_paths(value: Any, base_dir: Path | None) -> Any:
    """`value` (a config or a part of one) with every path-valued option resolved (see PATH_KEYS)."""
    if base_dir is None:
        return value
    if isinstance(value, list):
        return [resolve_paths(v, base_dir) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        if k in PATH_KEYS and isinstance(v, str):
            out[k] = resolve_path(v, base_dir, must_exist=k == "model")
        else:
            out[k] = resolve_paths(v, base_dir)
    return out


def validate_kind(schema: type[Schema], raw: Any, source: str = "<dict>",
                  base_dir: str | Path | None = None) -> Schema:
    """A capability's config (clip, continual, rl, ...): its path-valued options resolved against the file's folder,
    then validated by `schema`; every error names the file and the field."""
    given = resolve_paths(raw, Path(base_dir)) if base_dir is not None and isinstance(raw, dict) else raw
    return validate(schema, given, source)


def keyed_fields(dumped: dict[str, Any], not_in_key: tuple[str, ...],
                 first_fields: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """What a capability config's hash covers: its dump without `not_in_key`, and without every field added since
    the kind's first configs (a field not in `first_fields[block]`, "" the top level) while that field is unset
    (None), so that configs written before it keep their hashes and their finished results."""
    def keep(block: str, d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if v is not None or k in first_fields[block]}

    keyed = keep("", {k: v for k, v in dumped.items() if k not in not_in_key})
    for block in first_fields:
        if block and isinstance(keyed.get(block), dict):
            keyed[block] = keep(block, keyed[block])
    return keyed


def kind_name(name: str | None, source: str, default: str) -> str:
    """A capability config's name: the one it gives, else its file's stem, else the kind's default (a dict)."""
    return name or (Path(source).stem if source != "<dict>" else default)


def load_config(path: str | Path) -> RunConfig:
    raw, source, base_dir = read_config(path)
    return parse_config(raw, source=source, base_dir=base_dir)


# --- the run config's schema ------------------------------------------------------------------------------


def _by_name(value: Any) -> Any:
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        raise ValueError(f"give a registry name or a mapping with 'name', not {shown(value)}")
    return value


class Named(Schema):
    """A component by registry name: the name alone, or a mapping with ``name`` and ``args``."""

    name: str
    args: Args = {}

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return _by_name(value)


class Component(Named):
    """One entry of a component list: a :class:`Named` component with an ``id``."""

    id: str | None = None     # unique within its list; the name when not given

    @property
    def ident(self) -> str:
        return self.id or self.name

    def spec(self, kind: str) -> ComponentSpec:
        return ComponentSpec(kind, self.name, self.ident, dict(self.args))


class DatasetEntry(Component):
    limit: int | None = Field(None, ge=0)

    def spec(self, kind: str) -> ComponentSpec:
        return ComponentSpec(kind, self.name, self.ident, dict(self.args), self.limit)


class AttackEntry(Component):
    # the dataset, target and defense ids it applies to (all when absent)
    datasets: list[str] | None = Field(None, min_length=1)
    targets: list[str] | None = Field(None, min_length=1)
    defenses: list[str] | None = Field(None, min_length=1)

    def spec(self, kind: str) -> ComponentSpec:
        return ComponentSpec(kind, self.name, self.ident, dict(self.args), only_datasets=tuple(self.datasets or ()),
                             only_targets=tuple(self.targets or ()), only_defenses=tuple(self.defenses or ()))


class DefenseEntry(Component):
    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        """``{id: X, chain: [a, b]}`` is ``{id: X, name: chain, args: {steps: [a, b]}}``; ``preset:NAME`` (or a bare
        preset name no defense is registered under) and ``{preset: NAME, id: X}`` are the chain the preset names
        (``defenses/presets.py``), with id NAME unless given."""
        from safeglass.defenses.presets import preset_name, preset_steps

        value = _by_name(value)
        named = value.get("name")
        if isinstance(named, str) and preset_name(named) is not None:
            if set(value) - {"name", "id"}:
                raise ValueError(f"preset {preset_name(named)!r} takes no 'args': write the chain out to change a step")
            value = {**{k: v for k, v in value.items() if k != "name"}, "preset": preset_name(named)}
        if "preset" in value:
            if set(value) & {"name", "args", "chain"}:
                raise ValueError("give 'preset' or 'name'/'args'/'chain', not both")
            if not isinstance(value["preset"], str):
                raise ValueError(f"'preset' names a preset, not {shown(value['preset'])}")
            steps = preset_steps(value["preset"])
            return {"id": value.get("id", value["preset"]), "name": "chain", "args": {"steps": steps},
                    **{k: v for k, v in value.items() if k not in ("id", "preset")}}
        if "chain" not in value:
            return value
        if "name" in value or "args" in value:
            raise ValueError("give 'chain' or 'name'/'args', not both")
        if "id" not in value:
            raise ValueError("a chain needs an 'id' (it names the configuration in reports)")
        rest = {k: v for k, v in value.items() if k != "chain"}
        return {**rest, "name": "chain", "args": {"steps": value["chain"]}}


# Target arguments that older configs used for what is now a modifier: {argument: (modifier, its option)}.
LEGACY_MODIFIER_ARGS: dict[str, tuple[str, str]] = {"glasses": ("glasses", "path")}


class TargetEntry(Component):
    modifiers: list[Component] | None = None   # applied in order after the target loads

    def split(self) -> tuple[dict[str, Any], list[Component]]:
        """(args, modifiers): an older config's ``args.glasses`` leaves ``args`` and becomes the first modifier."""
        args, legacy = dict(self.args), []
        for arg, (name, option) in LEGACY_MODIFIER_ARGS.items():
            if args.get(arg) is not None:
                legacy.append(Component(name=name, args={option: args.pop(arg)}))
        return args, legacy + list(self.modifiers or [])

    @model_validator(mode="after")
    def _modifier_order(self) -> TargetEntry:
        _, modifiers = self.split()
        ids = [m.ident for m in modifiers]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"modifiers: duplicate id(s) {', '.join(dupes)}; give each an 'id'")
        keyed = [i for i, m in enumerate(modifiers) if _key_arg(m.name)]
        if keyed and keyed != list(range(len(keyed))):
            raise ValueError(f"modifiers {', '.join(modifiers[i].ident for i in keyed)} must come first (they stand "
                             "in for a target argument, whose effect came before any other modifier)")
        names = [_key_arg(modifiers[i].name) for i in keyed]
        if len(set(names)) != len(names):
            raise ValueError(f"give {names[0]} once (in args or in modifiers, not both)")
        return self

    def spec(self, kind: str) -> ComponentSpec:
        args, modifiers = self.split()
        return ComponentSpec(kind, self.name, self.ident, args, modifiers=tuple(m.spec("modifiers") for m in modifiers))


def _key_arg(name: str) -> str | None:
    from safeglass.registry import registry

    try:
        return getattr(registry("modifiers").get(name), "key_arg", None)
    except KeyError:
        return None  # the plan's option check names the unknown modifier with its close matches


class Generation(Schema):
    """Generation parameters, and k (``samples_per_prompt``). k lives beside the sampling parameters in YAML,
    where a user looks for it, but not in GenerationParams: those go into every result key, and k must change
    keys only through each completion's sample index (so a k=1 run's keys stay those of older runs)."""

    max_new_tokens: int = Field(GenerationParams.max_new_tokens, ge=1)
    temperature: Number = Field(GenerationParams.temperature, ge=0)   # 0: greedy
    top_p: Number = Field(GenerationParams.top_p, gt=0, le=1)
    seed: int = GenerationParams.seed
    stop: list[str] = []
    samples_per_prompt: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _k_needs_sampling(self) -> Generation:
        if self.samples_per_prompt > 1 and self.temperature <= 0:
            raise ValueError(f"samples_per_prompt={self.samples_per_prompt} needs temperature > 0; greedy "
                             "decoding would return the same completion k times")
        return self

    def params(self) -> GenerationParams:
        # only the fields the file sets, as written: GenerationParams keeps its defaults, keys their text
        given = {k: getattr(self, k) for k in self.model_fields_set if k != "samples_per_prompt"}
        if "stop" in given:
            given["stop"] = tuple(given["stop"])
        return GenerationParams(**given)


# The lists a run config holds: each entry's schema, and the entry that stands in for an absent or empty list.
RUN_ENTRIES: dict[str, tuple[type[Component], str | None]] = {
    "targets": (TargetEntry, None), "datasets": (DatasetEntry, None), "defenses": (DefenseEntry, "none"),
    "attacks": (AttackEntry, "none"), "judges": (Component, "keyword-refusal"), "scorers": (Component, None)}


class RunSchema(Schema):
    """A run config: targets x defenses x datasets x attacks x judges, generation parameters and a seed."""

    config_kind: ClassVar[str] = "run"

    name: str | None = None                  # the file's name when absent
    description: str | None = None
    targets: list[TargetEntry] = Field(min_length=1)
    datasets: list[DatasetEntry] = Field(min_length=1)
    defenses: list[DefenseEntry] | None = None
    attacks: list[AttackEntry] | None = None
    judges: list[Component] | None = None
    scorers: list[Component] | None = None   # replies against the samples' references (accuracy)
    generation: Generation | None = None
    seed: int = 0
    baseline_defense: str = "none"           # the defense id the others are compared with
    chunk_size: int = Field(32, ge=1)
    base_dir: str | None = None              # where relative paths are read from (the copies a run writes)
    primary_judge: str | None = None         # the judge id the report's finding reads

    def entries(self, kind: str) -> list[Any]:
        given = getattr(self, kind)
        entry, default = RUN_ENTRIES[kind]
        return list(given) if given else [] if default is None else [entry(name=default)]

    def cross_check(self) -> list[Problem]:
        """Unique ids in each list; every field that names an id (attack scoping, baseline_defense,
        primary_judge) names one that exists."""
        problems: list[Problem] = []
        ids = {kind: [e.ident for e in self.entries(kind)] for kind in RUN_ENTRIES}
        for kind, listed in ids.items():
            dupes = sorted({i for i in listed if listed.count(i) > 1})
            if dupes:
                problems.append(((kind,), f"duplicate id(s) {', '.join(dupes)}; give each an 'id'"))
        for i, attack in enumerate(self.entries("attacks")):
            for kind in ("datasets", "targets", "defenses"):
                for j, named in enumerate(getattr(attack, kind) or []):
                    if named not in ids[kind]:
                        problems.append((("attacks", i, kind, j), _unknown_id(named, kind, ids[kind])))
        if self.primary_judge is not None and self.primary_judge not in ids["judges"]:
            problems.append((("primary_judge",), _unknown_id(self.primary_judge, "judges", ids["judges"])))
        # the default ("none") may name no defense: then nothing is compared, as the user asked for no baseline
        if "baseline_defense" in self.model_fields_set and self.baseline_defense not in ids["defenses"]:
            problems.append((("baseline_defense",), _unknown_id(self.baseline_defense, "defenses", ids["defenses"])))
        return problems


def _unknown_id(named: str, kind: str, known: list[str]) -> str:
    return f"{named!r} is not one of the {kind}' ids{did_you_mean(named, known)}; known: {', '.join(known)}"


def parse_config(raw: Any, source: str = "<dict>", base_dir: str | Path | None = None) -> RunConfig:
    """A validated RunConfig (every problem at once, each naming ``source`` and the field). Relative paths in
    component options are read against ``base_dir`` (the config file's folder when loaded from a file; the
    ``base_dir`` field when the config gives one)."""
    if isinstance(raw, dict) and isinstance(raw.get("base_dir"), str):
        base_dir = raw["base_dir"]
    base = Path(base_dir) if base_dir is not None else None
    # paths resolved before validation (resolving changes no value's type); the hash reads `raw`, as given
    given = {k: resolve_paths(v, base) if k in RUN_LISTS else v for k, v in raw.items()} if isinstance(raw, dict) \
        else raw
    run = validate(RunSchema, given, source)
    generation = run.generation or Generation()

    def specs(kind: str) -> tuple[ComponentSpec, ...]:
        return tuple(e.spec(kind) for e in run.entries(kind))

    return RunConfig(
        name=run.name or Path(source).stem,
        targets=specs("targets"),
        datasets=specs("datasets"),
        defenses=specs("defenses"),
        attacks=specs("attacks"),
        judges=specs("judges"),
        scorers=specs("scorers"),
        generation=generation.params(),
        samples_per_prompt=generation.samples_per_prompt,
        seed=run.seed,
        baseline_defense=run.baseline_defense,
        chunk_size=run.chunk_size,
        source=source,
        raw=raw,
        base_dir=str(base) if base is not None else None,
    )
