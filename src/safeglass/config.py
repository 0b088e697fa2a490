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
from typing import Any

import yaml

from safeglass.hashing import content_hash
from safeglass.option_keys import NON_OUTPUT_ARGS
from safeglass.types import GenerationParams

# The lists of components, whose options may hold paths.
RUN_LISTS = ("targets", "datasets", "defenses", "attacks", "judges", "scorers")

class ConfigError(ValueError):
    """A config problem, with the file and the field at fault."""


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
    # targets only: modifiers applied in order after the target loads (glasses, adapters, ...)
    modifiers: tuple[ComponentSpec, ...] = ()

    def applies_to(self, target_id: str, dataset_id: str) -> bool:
        return ((not self.only_targets or target_id in self.only_targets)
                and (not self.only_datasets or dataset_id in self.only_datasets))

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


# --- the one reader of every config kind (run, neurons find, neurons eval, studies) -----------------------

# Option and field names whose string values are paths: resolved against the config file's folder. (image_root
# is not among them: it is relative to its data file, as the loaders document.)
PATH_KEYS = frozenset({"path", "prompt_file", "template_file", "rubric_file", "weights",
                       "weights_path", "tokenizer_path", "vectorizer_path", "model_path", "expertise", "jsonl",
                       "glasses", "model"})


def read_config(path: str | Path, what: str, known: set[str] | frozenset[str]) -> tuple[dict[str, Any], str, Path]:
    """(raw mapping, source name, folder its relative paths are read from) of a config file of kind `what`;
    a file that is not a mapping, or names unknown top-level fields, is a ConfigError naming the file."""
    path = Path(path)
    raw = read_yaml(path)
    check_fields(raw, known, str(path), what)
    base = raw.get("base_dir") if isinstance(raw, dict) else None
    return raw, str(path), Path(base) if isinstance(base, str) else path.resolve().parent


def check_fields(raw: Any, known: set[str] | frozenset[str], source: str, what: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a {what} config is a mapping, not {type(raw).__name__}")
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")


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


def load_config(path: str | Path) -> RunConfig:
    raw, source, base_dir = read_config(path, "run", _TOP_LEVEL)
    return parse_config(raw, source=source, base_dir=base_dir)


_TOP_LEVEL = {"name", "targets", "datasets", "defenses", "attacks", "judges", "scorers", "generation", "seed",
              "baseline_defense", "chunk_size", "description", "base_dir", "primary_judge"}
# Fields that change no output, so no result and not the config hash (base_dir: where the file's relative paths
# were read from, written into the copies a run makes of its config; primary_judge: the judge id the report's
# finding reads, chosen by calibration when unset).
_UNHASHED = ("chunk_size", "base_dir", "primary_judge")


def parse_config(raw: Any, source: str = "<dict>", base_dir: str | Path | None = None) -> RunConfig:
    """A validated RunConfig. Relative paths in component options are read against ``base_dir`` (the config
    file's folder when loaded from a file; the ``base_dir`` field when the config gives one)."""
    check_fields(raw, _TOP_LEVEL, source, "run")
    if isinstance(raw.get("base_dir"), str):
        base_dir = raw["base_dir"]
    base = Path(base_dir) if base_dir is not None else None
    resolved = {k: resolve_paths(v, base) if k in RUN_LISTS else v for k, v in raw.items()}
    for required in ("targets", "datasets"):
        if not raw.get(required):
            raise ConfigError(f"{source}: field '{required}' is required and must list at least one entry")
    generation, samples_per_prompt = _generation(raw.get("generation"), source)
    defenses = _components(resolved.get("defenses") or ["none"], "defenses", source)
    baseline = str(raw.get("baseline_defense", "none"))
    targets = _components(resolved["targets"], "targets", source)
    datasets = _components(resolved["datasets"], "datasets", source)
    attacks = _components(resolved.get("attacks") or ["none"], "attacks", source)
    for i, a in enumerate(attacks):
        for field_name, ids, known in (("datasets", a.only_datasets, datasets), ("targets", a.only_targets, targets)):
            unknown = sorted(set(ids) - {k.id for k in known})
            if unknown:
                raise ConfigError(f"{source}: attacks[{i}] ({a.id}): field '{field_name}' names unknown id(s) "
                                  f"{', '.join(unknown)}; known: {', '.join(k.id for k in known)}")
    judges = _components(resolved.get("judges") or ["keyword-refusal"], "judges", source)
    primary = raw.get("primary_judge")
    if primary is not None and primary not in {j.id for j in judges}:
        raise ConfigError(f"{source}: field 'primary_judge' names {primary!r}, not one of the judges' ids "
                          f"({', '.join(j.id for j in judges)})")
    return RunConfig(
        name=str(raw.get("name") or Path(source).stem),
        targets=targets,
        datasets=datasets,
        defenses=defenses,
        attacks=attacks,
        judges=judges,
        scorers=_components(resolved.get("scorers") or [], "scorers", source),
        generation=generation,
        samples_per_prompt=samples_per_prompt,
        seed=int(raw.get("seed", 0)),
        baseline_defense=baseline,
        chunk_size=int(raw.get("chunk_size", 32)),
        source=source,
        raw=raw,
        base_dir=str(base) if base is not None else None,
    )


def _generation(raw: Any, source: str) -> tuple[GenerationParams, int]:
    """GenerationParams and k. k lives beside the sampling parameters in YAML, where a user looks for
    it, but not in GenerationParams: those go into every result key, and k must change keys only
    through each completion's sample index (so a k=1 run's keys stay those of older runs)."""
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{source}: field 'generation' must be a mapping")
    gen = dict(raw or {})
    k = gen.pop("samples_per_prompt", 1)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"{source}: field 'generation.samples_per_prompt' must be an integer >= 1, not {k!r}")
    try:
        params = GenerationParams.from_dict(gen)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: field 'generation': {exc}") from None
    if k > 1 and params.greedy:
        raise ConfigError(f"{source}: field 'generation': samples_per_prompt={k} needs temperature > 0; "
                          "greedy decoding would return the same completion k times")
    return params, k


def _components(items: Any, kind: str, source: str) -> tuple[ComponentSpec, ...]:
    if not isinstance(items, list):
        raise ConfigError(f"{source}: field '{kind}' must be a list")
    specs: list[ComponentSpec] = []
    for i, item in enumerate(items):
        where = f"{source}: {kind}[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if kind == "defenses" and isinstance(item, dict) and "chain" in item:
            item = _chain_shorthand(item, where)
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{where}: give a registry name or a mapping with 'name'")
        scoping = {"datasets", "targets"} if kind == "attacks" else set()
        nested = {"modifiers"} if kind == "targets" else set()
        extra = set(item) - {"name", "id", "args", "limit"} - scoping - nested
        if extra:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(extra))} (use 'args' for options)")
        only: dict[str, tuple[str, ...]] = {}
        for field_name in sorted(scoping & set(item)):
            ids = item[field_name]
            if not isinstance(ids, list) or not ids or not all(isinstance(x, str) for x in ids):
                raise ConfigError(f"{where}: field '{field_name}' must be a non-empty list of {field_name[:-1]} ids")
            only[f"only_{field_name}"] = tuple(ids)
        args = item.get("args") or {}
        if not isinstance(args, dict):
            raise ConfigError(f"{where}: field 'args' must be a mapping")
        limit = item.get("limit")
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ConfigError(f"{where}: field 'limit' must be a non-negative integer")
        args = dict(args)
        modifiers = _modifiers(item.get("modifiers"), args, where) if kind == "targets" else ()
        specs.append(ComponentSpec(kind, str(item["name"]), str(item.get("id") or item["name"]), args, limit,
                                   **only, modifiers=modifiers))
    ids = [s.id for s in specs]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ConfigError(f"{source}: field '{kind}': duplicate id(s) {', '.join(sorted(dupes))}; give each an 'id'")
    return tuple(specs)


# Target arguments that older configs used for what is now a modifier: {argument: (modifier, its option)}.
LEGACY_MODIFIER_ARGS: dict[str, tuple[str, str]] = {"glasses": ("glasses", "path")}


def _modifiers(items: Any, args: dict[str, Any], where: str) -> tuple[ComponentSpec, ...]:
    """A target's modifiers; an older config's ``args.glasses`` leaves ``args`` and becomes the first one."""
    legacy = []
    for arg, (name, option) in LEGACY_MODIFIER_ARGS.items():
        if args.get(arg) is not None:
            legacy.append({"name": name, "args": {option: args.pop(arg)}})
    listed = items if items is not None else []
    if not isinstance(listed, list):
        raise ConfigError(f"{where}: field 'modifiers' must be a list")
    specs = _components(legacy + listed, "modifiers", f"{where} modifiers") if legacy or listed else ()
    keyed = [i for i, m in enumerate(specs) if _key_arg(m.name)]
    if keyed and keyed != list(range(len(keyed))):
        raise ConfigError(f"{where}: field 'modifiers': {', '.join(specs[i].id for i in keyed)} must come first "
                          "(they stand in for a target argument, whose effect came before any other modifier)")
    names = [_key_arg(specs[i].name) for i in keyed]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: field 'modifiers': give {names[0]} once (in args or in modifiers, not both)")
    return specs


def _key_arg(name: str) -> str | None:
    from safeglass.registry import registry

    try:
        return getattr(registry("modifiers").get(name), "key_arg", None)
    except KeyError:
        return None  # the plan's option check names the unknown modifier with its close matches


def _chain_shorthand(item: dict[str, Any], where: str) -> dict[str, Any]:
    """``{id: X, chain: [a, b]}`` is ``{id: X, name: chain, args: {steps: [a, b]}}``."""
    if "name" in item or "args" in item:
        raise ConfigError(f"{where}: give 'chain' or 'name'/'args', not both")
    if "id" not in item:
        raise ConfigError(f"{where}: a chain needs an 'id' (it names the configuration in reports)")
    rest = {k: v for k, v in item.items() if k != "chain"}
    return {**rest, "name": "chain", "args": {"steps": item["chain"]}}
