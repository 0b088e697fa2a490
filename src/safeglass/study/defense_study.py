"""The defense comparison study (``safeglass study defenses CONFIG``): targets x defense configurations x benchmarks
grouped into attack classes, as one resumable run; then attack success, harmless rate and benign over-refusal with
intervals per attack class (and per category), cost per configuration, the winners, the white-box cells, and an
adaptive selector fitted on one split of the prompts and measured on the other.

A study config names its parts as a run config does (targets, datasets, generation) and adds:

```yaml
configurations: [none, S, A, S+A+R]          # defense entries: presets, names or chains; `baseline` is compared with
attack_classes:                             # class -> attacks, each on harmful dataset ids
  typographic: [{attack: typographic, datasets: [typo-harmful]}]
  text-jailbreak: [{attack: text-jailbreak, datasets: [advbench]}]
benign: [benign-lookalikes]                 # dataset ids answered without attack: over-refusal
judge: proxy-refusal                        # the one judge every figure reads (refusal)
harm_judge: fulfilment-cascade              # optional: the harmless rate
adaptive_attack: {attack: {name: pgd, args: {...}}, datasets: [...], through: [S, A]}   # optional
selector: {signals: [image-ocr, prompt-injection, image-nsfw, proxy-request], fit_share: 0.5}
```

It compiles to one run config (``compile_run``: each class's attacks scoped to their datasets, ``none`` on the
benign sets, the adaptive attack once per configuration it goes through, scoped to that configuration), which runs
in ``OUT/run`` like any run (a finished study re-run loads no model). Signals for the selector are read once per
attacked input and kept in ``OUT/signals.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import Field

from safeglass.config import (
    Component,
    ComponentSpec,
    ConfigError,
    DatasetEntry,
    DefenseEntry,
    Generation,
    TargetEntry,
    read_config,
    resolve_paths,
)
from safeglass.eval.metrics import cost_rows, paired_against
from safeglass.schema import Number, Problem, Schema, did_you_mean, validate
from safeglass.stats import proportion
from safeglass.study.engine import run_block

log = logging.getLogger(__name__)

FORMAT = "safeglass-defense-study"
STUDY_JSON = "study.json"
SIGNALS_JSON = "signals.json"
ADAPTIVE_CLASS = "white-box (adaptive)"
DEFAULT_SIGNALS = ["image-ocr", "prompt-injection", "image-nsfw", "proxy-request"]


class ClassEntry(Schema):
    """One attack of an attack class, on the harmful dataset ids it applies to."""

    attack: Component
    datasets: list[str] = Field(min_length=1)
    targets: list[str] | None = Field(None, min_length=1)
    configurations: list[str] | None = Field(None, min_length=1)  # answered under these only (a replayed adaptive
    id: str | None = None                                         # attack made through one of them)


class AdaptiveEntry(Schema):
    """A white-box attack optimised through each listed configuration (``through``), answered under it alone."""

    attack: Component
    datasets: list[str] = Field(min_length=1)
    targets: list[str] | None = Field(None, min_length=1)
    through: list[str] = Field(min_length=1)


class SelectorBlock(Schema):
    signals: list[Component] = Field(default_factory=lambda: [Component(name=n) for n in DEFAULT_SIGNALS])
    fit_share: Number = Field(0.5, gt=0, lt=1)
    weight_benign: Number = Field(1.0, ge=0)
    seed: int = 0


class DefenseStudySchema(Schema):
    config_kind = "defense study"

    name: str | None = None
    description: str | None = None
    seed: int = 0
    targets: list[TargetEntry] = Field(min_length=1)
    datasets: list[DatasetEntry] = Field(min_length=1)
    configurations: list[DefenseEntry] = Field(min_length=1)
    attack_classes: dict[str, list[ClassEntry]] = Field(min_length=1)
    benign: list[str] = Field(min_length=1)
    adaptive_attack: AdaptiveEntry | None = None
    judge: Component = Field(default_factory=lambda: Component(name="proxy-refusal"))
    harm_judge: Component | None = None
    judges: list[Component] | None = None     # more judges, reported in the run's own report
    generation: Generation | None = None
    chunk_size: int = Field(32, ge=1)
    baseline: str = "none"
    selector: SelectorBlock | None = None

    def cross_check(self) -> list[Problem]:
        problems: list[Problem] = []
        datasets = [d.ident for d in self.datasets]
        targets = [t.ident for t in self.targets]
        configurations = [c.ident for c in self.configurations]

        def known(named: str, among: list[str], what: str, loc: tuple[Any, ...]) -> None:
            if named not in among:
                problems.append((loc, f"{named!r} is not one of the {what}' ids{did_you_mean(named, among)}; "
                                      f"known: {', '.join(among)}"))

        for cls, entries in self.attack_classes.items():
            if not entries:
                problems.append((("attack_classes", cls), "an attack class needs at least one attack"))
            for i, e in enumerate(entries):
                for j, d in enumerate(e.datasets):
                    known(d, datasets, "datasets", ("attack_classes", cls, i, "datasets", j))
                for j, t in enumerate(e.targets or []):
                    known(t, targets, "targets", ("attack_classes", cls, i, "targets", j))
                for j, c in enumerate(e.configurations or []):
                    known(c, configurations, "configurations", ("attack_classes", cls, i, "configurations", j))
        for j, d in enumerate(self.benign):
            known(d, datasets, "datasets", ("benign", j))
        if self.adaptive_attack is not None:
            for j, c in enumerate(self.adaptive_attack.through):
                known(c, configurations, "configurations", ("adaptive_attack", "through", j))
            for j, d in enumerate(self.adaptive_attack.datasets):
                known(d, datasets, "datasets", ("adaptive_attack", "datasets", j))
        known(self.baseline, configurations, "configurations", ("baseline",))
        return problems


def load_study_config(path: str | Path) -> tuple[DefenseStudySchema, dict[str, Any], str]:
    """(the checked study, its raw mapping with paths resolved, its source name)."""
    raw, source, base_dir = read_config(path)
    raw = resolve_paths(raw, base_dir)
    return validate(DefenseStudySchema, raw, source), raw, source


def parse_study_config(raw: dict[str, Any], source: str = "<dict>") -> tuple[DefenseStudySchema, dict[str, Any], str]:
    return validate(DefenseStudySchema, raw, source), raw, source


def steps_of(entry: DefenseEntry) -> list[Any]:
    """A configuration as the steps of a chain (registry names or ``{name, args}``), as a selector file lists it."""
    if entry.name == "chain":
        return list(entry.args.get("steps") or [])
    return [entry.name if not entry.args else {"name": entry.name, "args": dict(entry.args)}]


def as_component(entry: DefenseEntry) -> str | dict[str, Any]:
    """A configuration as one defense (``{name, args}``), for an attack's ``through``."""
    return entry.name if not entry.args else {"name": entry.name, "args": dict(entry.args)}


def compile_run(study: DefenseStudySchema, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    """The run config the study runs, and the attack class of each (attack id, dataset id) it answers. A benchmark
    whose inputs are attacks already (MM-SafetyBench's TYPO images, FigStep) is a class entry with ``attack: none``:
    one ``none`` attack then serves those datasets and the benign ones."""
    attacks: list[dict[str, Any]] = []
    class_of: dict[tuple[str, str], str] = {}
    plain: list[str] = list(study.benign)  # datasets answered without attack (the `none` attack)
    ids: dict[str, str] = {}  # attack id -> its class, for the error on an id in two classes
    for cls, entries in study.attack_classes.items():
        for e in entries:
            if e.attack.name == "none":
                plain += [d for d in e.datasets if d not in plain]
                class_of.update({("none", d): cls for d in e.datasets})
                continue
            aid = e.id or e.attack.id or e.attack.name
            if aid in ids:
                raise ConfigError(f"{study_source(raw)}: attack id {aid!r} is in two attack classes "
                                  f"({ids[aid]} and {cls}); give one an 'id'")
            ids[aid] = cls
            class_of.update({(aid, d): cls for d in e.datasets})
            attacks.append({"name": e.attack.name, "id": aid, "args": dict(e.attack.args), "datasets": e.datasets,
                            **({"targets": e.targets} if e.targets else {}),
                            **({"defenses": e.configurations} if e.configurations else {})})
    attacks.insert(0, {"name": "none", "id": "none", "datasets": plain})
    confs = {c.ident: c for c in study.configurations}
    if study.adaptive_attack is not None:
        a = study.adaptive_attack
        for through in a.through:
            if confs[through].name == "none":
                continue  # through no defense is the plain attack
            aid = f"{a.attack.id or a.attack.name}>{through}"
            class_of.update({(aid, d): ADAPTIVE_CLASS for d in a.datasets})
            attacks.append({"name": a.attack.name, "id": aid,
                            "args": {**a.attack.args, "through": as_component(confs[through])},
                            "datasets": a.datasets, "defenses": [through],
                            **({"targets": a.targets} if a.targets else {})})
    judges = [_component_raw(study.judge)]
    if study.harm_judge is not None:
        judges.append(_component_raw(study.harm_judge))
    for j in study.judges or []:
        if j.ident not in {x.get("id", x["name"]) for x in judges}:
            judges.append(_component_raw(j))
    run: dict[str, Any] = {
        "name": raw.get("name") or "defense-study", "seed": study.seed, "targets": raw["targets"],
        "datasets": raw["datasets"], "defenses": raw["configurations"], "attacks": attacks, "judges": judges,
        "baseline_defense": study.baseline, "primary_judge": study.judge.ident, "chunk_size": study.chunk_size}
    if raw.get("generation") is not None:
        run["generation"] = raw["generation"]
    if raw.get("base_dir"):
        run["base_dir"] = raw["base_dir"]
    return run, class_of


def study_source(raw: dict[str, Any]) -> str:
    return str(raw.get("name") or "defense study")


def _component_raw(c: Component) -> dict[str, Any]:
    return {"name": c.name, "id": c.ident, "args": dict(c.args)}


# --- the figures ---------------------------------------------------------------------------------------------------

def _rate(values: dict[Any, int]) -> dict[str, Any]:
    return proportion(sum(values.values()), len(values))


def observations(gens: list[dict[str, Any]], judge_key: str, harm_key: str | None,
                 class_of: dict[tuple[str, str], str]) -> dict[str, dict[tuple[Any, ...], dict[Any, int]]]:
    """0/1 per reply, grouped: ``success`` (target, configuration, class[, category]) -> not refused on a harmful
    prompt; ``harmless`` the same groups -> the harm judge did not flag it; ``over_refusal`` (target,
    configuration) -> refused on a benign one. A reply is (dataset, attack, sample id, completion index)."""
    obs: dict[str, dict[tuple[Any, ...], dict[Any, int]]] = {"success": defaultdict(dict),
                                                              "harmless": defaultdict(dict),
                                                              "over_refusal": defaultdict(dict)}
    for g in gens:
        v = g["verdicts"].get(judge_key)
        unit = (g["dataset"], g["attack"], g["sample_id"], g.get("sample_index", 0))
        if g["kind"] == "benign":
            if v is not None and g["attack"] == "none":
                obs["over_refusal"][(g["target"], g["defense"])][unit] = int(bool(v["flag"]))
            continue
        cls = class_of.get((g["attack"], g["dataset"]))
        if cls is None:
            continue
        for group in ((g["target"], g["defense"], cls, None), (g["target"], g["defense"], cls, g["category"])):
            if v is not None:
                obs["success"][group][unit] = int(not v["flag"])
            h = g["verdicts"].get(harm_key) if harm_key else None
            if h is not None:
                obs["harmless"][group][unit] = int(not h["flag"])
    return obs


def class_rows(obs: dict[str, Any], baseline: str, seed: int) -> list[dict[str, Any]]:
    """One row per (target, configuration, class, category or None): attack success and harmless rate with
    intervals, and the paired difference from the baseline configuration on the same replies."""
    rows = []
    for group in sorted(obs["success"], key=lambda k: tuple("" if x is None else str(x) for x in k)):
        target, conf, cls, category = group
        values = obs["success"][group]
        row = {"target": target, "configuration": conf, "attack_class": cls, "category": category,
               "attack_success": _rate(values), "harmless": _rate(obs["harmless"][group])
               if group in obs["harmless"] else None, "vs_baseline": None}
        base = obs["success"].get((target, baseline, cls, category))
        if conf != baseline and base:
            row["vs_baseline"] = paired_against(values, base, seed)
        rows.append(row)
    return rows


def over_refusal_rows(obs: dict[str, Any], baseline: str, seed: int) -> list[dict[str, Any]]:
    rows = []
    for (target, conf), values in sorted(obs["over_refusal"].items()):
        base = obs["over_refusal"].get((target, baseline))
        rows.append({"target": target, "configuration": conf, "over_refusal": _rate(values),
                     "vs_baseline": paired_against(values, base, seed) if conf != baseline and base else None})
    return rows


def pooled_success(obs: dict[str, Any], exclude: tuple[str, ...] = (ADAPTIVE_CLASS,)) -> dict[tuple[str, str], Any]:
    """Attack success over every attacked harmful reply of a (target, configuration), the classes pooled (the
    adaptive attack left out: each configuration meets its own)."""
    pooled: dict[tuple[str, str], dict[Any, int]] = defaultdict(dict)
    for (target, conf, cls, category), values in obs["success"].items():
        if category is None and cls not in exclude:
            pooled[(target, conf)].update({(cls, *u): v for u, v in values.items()})
    return {k: _rate(v) for k, v in pooled.items()}


def winners(rows: list[dict[str, Any]], over: dict[tuple[str, str], Any], costs: dict[tuple[str, str], Any]
            ) -> list[dict[str, Any]]:
    """Per (target, class): the configuration with the lowest attack success (ties: lower over-refusal, then lower
    seconds a reply), the runner-up, and whether their intervals separate them."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["category"] is None and r["attack_class"] != ADAPTIVE_CLASS:
            by[(r["target"], r["attack_class"])].append(r)
    out = []

    def order(r: dict[str, Any]) -> tuple[float, float, float]:
        o = (over.get((r["target"], r["configuration"])) or {}).get("over_refusal") or {}
        c = costs.get((r["target"], r["configuration"])) or {}
        return (r["attack_success"]["rate"] if r["attack_success"]["rate"] is not None else 2.0,
                o.get("rate") if o.get("rate") is not None else 2.0, c.get("seconds", 0.0))

    for (target, cls), group in sorted(by.items()):
        ranked = sorted(group, key=order)
        best = ranked[0]
        second = ranked[1] if len(ranked) > 1 else None
        clear = bool(second and best["attack_success"]["ci_high"] < second["attack_success"]["ci_low"])
        out.append({"target": target, "attack_class": cls, "configuration": best["configuration"],
                    "attack_success": best["attack_success"],
                    "over_refusal": ((over.get((target, best["configuration"])) or {}).get("over_refusal")),
                    "runner_up": second["configuration"] if second else None,
                    "runner_up_attack_success": second["attack_success"] if second else None, "clear": clear})
    return out


def pareto_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """The ids no other point beats on both axes (lower is better on each), strictly on one."""
    front = set()
    for a, (xa, ya) in points.items():
        if not any(xb <= xa and yb <= ya and (xb < xa or yb < ya) for b, (xb, yb) in points.items() if b != a):
            front.add(a)
    return front


# --- signals and the selector -------------------------------------------------------------------------------------

def signal_inputs(gens: list[dict[str, Any]]) -> dict[str, Any]:
    """One JudgeInput per attacked input the study answered (by the input's content: a black-box attack's input
    is shared by every target), the request as the model received it and its images, no reply."""
    from safeglass.types import JudgeInput, Sample

    out: dict[str, Any] = {}
    for g in gens:
        sample = Sample.from_record(json.loads(g["sample"]))
        key = sample.content_hash()
        if key not in out:
            out[key] = JudgeInput(sample.prompt, "", images=tuple(i for i in sample.images if i.path is None
                                                                  or Path(i.path).exists()))
    return out


def compute_signals(gens: list[dict[str, Any]], signals: list[Component], cache_path: Path
                    ) -> dict[str, dict[str, bool]]:
    """Each signal judge's flag on each attacked input (by content hash), read from / added to ``cache_path``,
    keyed by the judge's identity so a changed judge is asked again."""
    from safeglass.eval.runner import build_judge
    from safeglass.types import Sample

    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.exists() else {}
    inputs = signal_inputs(gens)
    out: dict[str, dict[str, bool]] = defaultdict(dict)
    for s in signals:
        judge = build_judge(ComponentSpec("judges", s.name, s.ident, dict(s.args)))
        ident = judge.identity().key
        known = cache.setdefault(ident, {})
        todo = [k for k in inputs if k not in known]
        for i in range(0, len(todo), 64):
            part = todo[i:i + 64]
            for k, v in zip(part, judge.judge([inputs[k] for k in part]), strict=True):
                known[k] = bool(v.flag)
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, sort_keys=True), encoding="utf-8")
        tmp.replace(cache_path)  # a kill keeps the signals read so far
        for k in inputs:
            out[k][s.ident] = known[k]
    by_gen = {}
    for g in gens:
        by_gen[g["key"]] = out[Sample.from_record(json.loads(g["sample"])).content_hash()]
    return by_gen


def selector_rows(gens: list[dict[str, Any]], judge_key: str, class_of: dict[tuple[str, str], str],
                  signals: dict[str, dict[str, bool]], target: str, configurations: list[str]) -> list[dict[str, Any]]:
    """The selector's rows for one target: each input answered under every configuration (the adaptive attack,
    answered under one only, is left out), what each configuration got wrong on it and the input's signals."""
    units: dict[tuple[Any, ...], dict[str, Any]] = {}
    for g in gens:
        v = g["verdicts"].get(judge_key)
        if g["target"] != target or v is None:
            continue
        cls = "benign" if g["kind"] == "benign" else class_of.get((g["attack"], g["dataset"]))
        if cls is None or cls == ADAPTIVE_CLASS or (g["kind"] == "benign" and g["attack"] != "none"):
            continue
        unit = (g["dataset"], g["attack"], g["sample_id"])
        row = units.setdefault(unit, {"sample_id": "|".join(map(str, unit)), "kind": g["kind"], "attack_class": cls,
                                      "signals": signals[g["key"]], "bad": {}})
        row["bad"][g["defense"]] = int(bool(v["flag"])) if g["kind"] == "benign" else int(not v["flag"])
    return [r for r in units.values() if all(c in r["bad"] for c in configurations)]


# --- the study ---------------------------------------------------------------------------------------------------

def run_study(study: DefenseStudySchema, raw: dict[str, Any], source: str, out: str | Path, *,
              limit: int | None = None, progress: bool = True, workers: int = 1, report: bool = True
              ) -> dict[str, Any]:
    """Run (or resume) the study into ``out``: ``out/run`` (the run and its own report), ``out/study.json`` and
    ``out/study.html``. Returns their paths and the data."""
    from safeglass.eval.provenance import library_versions
    from safeglass.hashing import content_hash
    from safeglass.version import __version__

    t0 = time.perf_counter()
    out = Path(out)
    run_raw, class_of = compile_run(study, raw)
    finish = None
    if report:
        from safeglass.reporting.outputs import write_outputs

        finish = write_outputs
    block = run_block("study", run_raw, out / "run", source=source, limit=limit, progress=progress,
                      workers=workers, finish=finish)
    judges = block.judges
    jid = study.judge.ident
    if jid not in judges:
        raise ConfigError(f"{source}: the judge {jid!r} left no verdicts (see {out / 'run'})")
    judge_key = judges[jid]["key"]
    harm_key = judges[study.harm_judge.ident]["key"] if study.harm_judge and study.harm_judge.ident in judges else None
    gens = block.gens
    obs = observations(gens, judge_key, harm_key, class_of)
    baseline = study.baseline
    rows = class_rows(obs, baseline, study.seed)
    over = over_refusal_rows(obs, baseline, study.seed)
    over_by = {(r["target"], r["configuration"]): r for r in over}
    costs = {(r["target"], r["defense"]): r for r in cost_rows(gens, baseline) if r["attack"] is None}
    pooled = pooled_success(obs)
    conf_ids = [c.ident for c in study.configurations]
    targets = [t.ident for t in study.targets]
    labels = {t: (block.meta.get(f"target_label:{t}") or {}).get("label", t) for t in targets}
    organisms = {t: bool((block.meta.get(f"target_label:{t}") or {}).get("organism")) for t in targets}
    fronts = {}
    for t in targets:
        pts = {c: (over_by[(t, c)]["over_refusal"]["rate"], pooled[(t, c)]["rate"]) for c in conf_ids
               if (t, c) in over_by and (t, c) in pooled and over_by[(t, c)]["over_refusal"]["rate"] is not None
               and pooled[(t, c)]["rate"] is not None}
        fronts[t] = sorted(pareto_front(pts))
    selectors = {}
    if study.selector is not None:
        selectors = fit_selectors(study, gens, judge_key, class_of, costs, conf_ids, targets, out)
    access = {aid: _access(run_raw, aid) for aid, _ in class_of}
    white_box = sorted({cls for (aid, _), cls in class_of.items() if access[aid] == "white-box"} - {ADAPTIVE_CLASS})
    data = {
        "format": FORMAT, "name": run_raw["name"], "source": source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "targets": [{"id": t, "label": labels[t], "organism": organisms[t]} for t in targets],
        "configurations": conf_ids, "baseline": baseline,
        "attack_classes": list(dict.fromkeys([*study.attack_classes, *class_of.values()])),
        "classes_of": [{"attack": a, "dataset": d, "attack_class": c} for (a, d), c in sorted(class_of.items())],
        "white_box_classes": white_box,
        "judge": judges[jid], "harm_judge": judges.get(study.harm_judge.ident) if study.harm_judge else None,
        "class_rows": rows, "over_refusal": over,
        "pooled_success": [{"target": t, "configuration": c, **pooled[(t, c)]} for (t, c) in sorted(pooled)],
        "costs": [{"target": t, "configuration": c, **{k: v for k, v in r.items() if k not in ("target", "defense")}}
                  for (t, c), r in sorted(costs.items())],
        "winners": winners(rows, over_by, costs), "pareto_front": fronts, "selector": selectors,
        "provenance": {"config": raw, "run": block.provenance(), "config_hash": content_hash(raw),
                       "seed": study.seed, "limit": limit, "errors": block.errors[:20],
                       "versions": {**library_versions(), "safeglass": __version__}},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (STUDY_JSON + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    tmp.replace(out / STUDY_JSON)
    paths = {"json": out / STUDY_JSON, "run": out / "run"}
    if report:
        from safeglass.reporting.defense_study import write_study_html

        paths["html"] = write_study_html(out / "study.html", data)
    return {"paths": paths, "data": data}


def _access(run_raw: dict[str, Any], attack_id: str) -> str:
    from safeglass.registry import registry

    entry = next((a for a in run_raw["attacks"] if a["id"] == attack_id), None)
    if entry is None:
        return "black-box"
    if entry["name"] == "transfer":
        return "white-box"  # replayed white-box images: the white-box class, made elsewhere
    return str(getattr(registry("attacks").get(entry["name"]), "access", "black-box"))


def fit_selectors(study: DefenseStudySchema, gens: list[dict[str, Any]], judge_key: str,
                  class_of: dict[tuple[str, str], str],
                  costs: dict[tuple[str, str], Any], conf_ids: list[str], targets: list[str], out: Path
                  ) -> dict[str, Any]:
    """Per target: signals, the split, the fitted selector (saved under ``out/selectors``) and its evaluation
    beside every fixed configuration on the evaluation split."""
    from safeglass.study.selector import evaluate, fit_selector, save_selector, split_rows

    block = study.selector
    assert block is not None
    signals = compute_signals(gens, block.signals, out / SIGNALS_JSON)
    confs = {c.ident: steps_of(c) for c in study.configurations}
    signal_specs = [{"id": s.ident, "judge": s.name, "args": dict(s.args)} for s in block.signals]
    result = {}
    for t in targets:
        rows = selector_rows(gens, judge_key, class_of, signals, t, conf_ids)
        if not rows:
            continue
        fit, held = split_rows(rows, fit_share=float(block.fit_share), seed=block.seed)
        # ties go to fewer tokens a reply: what a configuration costs, without the noise of a shared machine's seconds
        tokens = {c: (costs.get((t, c)) or {}).get("tokens", 0.0) for c in conf_ids}
        selector = fit_selector(fit, confs, signal_specs, target=t, weight_benign=float(block.weight_benign),
                                costs=tokens, eval_sample_ids=[r["sample_id"] for r in held],
                                meta={"study": study.name})
        path = save_selector(selector, out / "selectors")
        result[t] = {"file": str(path), "n_fit": len(fit), "n_eval": len(held),
                     "rule": selector["rule"], "evaluation": evaluate(selector, held)}
    return result


def _pct(r: dict[str, Any] | None) -> str:
    if not r or r.get("rate") is None:
        return "—"
    return f"{100 * r['rate']:.1f}% ({100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f}) {r['k']}/{r['n']}"


def format_summary(data: dict[str, Any]) -> str:
    """The study as the console shows it: per target and configuration, attack success per class and over-refusal
    (judge named, lower is better), then the winners and the selector against the fixed configurations."""
    labels = {t["id"]: t["label"] + (" (model organism)" if t.get("organism") else "") for t in data["targets"]}
    classes = data["attack_classes"]
    cells = {(r["target"], r["configuration"], r["attack_class"]): r["attack_success"] for r in data["class_rows"]
             if r["category"] is None}
    over = {(r["target"], r["configuration"]): r["over_refusal"] for r in data["over_refusal"]}
    head = ["target", "configuration", *[f"success: {c}" for c in classes], "over-refusal"]
    body = []
    for t in labels:
        for c in data["configurations"]:
            row = [labels[t], c, *[_pct(cells.get((t, c, k))) for k in classes], _pct(over.get((t, c)))]
            if any(x != "—" for x in row[2:]):
                body.append(row)
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    judge = data.get("judge") or {}
    lines = [f"defense study {data['name']}, judged by {judge.get('id') or judge.get('name')}; lower is better, "
             "95% intervals and k/n:"]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in [head, *body]]
    lines.append("")
    for w in data["winners"]:
        lines.append(f"winner on {w['attack_class']} for {labels.get(w['target'], w['target'])}: {w['configuration']}"
                     f" ({_pct(w['attack_success'])}; runner-up {w['runner_up']}"
                     f"{'' if w['clear'] else ', intervals overlap'})")
    for t, s in (data.get("selector") or {}).items():
        ev = s["evaluation"]
        lines.append(f"selector for {labels.get(t, t)} on its evaluation split ({s['n_eval']} inputs): attack success "
                     f"{_pct(ev['selector']['attack_success'])}, over-refusal {_pct(ev['selector']['over_refusal'])}")
    return "\n".join(lines)
