"""`safeglass continual run` and `safeglass continual sweep`: a continual config in, cells and one JSON out.

A cell is one (strategy, contamination ratio, seed): one stream, one strategy, its accuracy matrix and failure-mode
records, written to OUT/cells/ as soon as it finishes and keyed by everything its result depends on, so a rerun
(after a kill, or with more strategies, ratios or seeds) reuses the finished cells. `run` trains every strategy at the
config's ratio and seed; `sweep` the grid of strategies x sweep.ratios x sweep.seeds, then means with Student-t
intervals over seeds, the damage per strategy, the mitigation's recovery and cost, and the plots.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.continual.config import ContinualConfig
from safeglass.continual.streams import Source, Stream

FORMAT = "safeglass.continual/1"
RUN_JSON = "continual-run.json"
SWEEP_JSON = "continual-sweep.json"


def _say(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    return progress or (lambda _line: None)


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: a kill never leaves half a file


def load_source(cfg: ContinualConfig) -> Source:
    from safeglass.continual import streams

    d = cfg.data
    if d["source"] == "digits":
        return streams.digits()
    if d["source"] == "shapeworld":
        return streams.shapeworld(d["n"], d["split_seed"], d["image_size"])
    return streams.folder(d["image_dir"], d["image_size"], d["grey"])


def synthetic_source(cfg: ContinualConfig, real: Source, train_idx: np.ndarray) -> tuple[Callable, dict[str, Any]]:
    """The sampler that contaminates the stream, and its identity (the generator's card, or the folder)."""
    s = cfg.synthetic
    if s["source"] == "folder":
        from safeglass.continual import streams

        # read at the real images' side and colour, whatever the folder's files are
        gen = streams.folder(s["image_dir"], real.shape[0], len(real.shape) == 2)
        if gen.x.shape[1] != real.x.shape[1]:
            raise ValueError(f"{cfg.source}: synthetic.image_dir images have {gen.x.shape[1]} values, "
                             f"the real ones {real.x.shape[1]}")
        index = {c: np.flatnonzero(gen.y == gen.classes.index(name)) if name in gen.classes else np.array([], int)
                 for c, name in enumerate(real.classes)}

        def from_folder(cls: int, n: int, seed: int) -> np.ndarray:
            pool = index[cls]
            if len(pool) == 0:
                raise ValueError(f"{cfg.source}: synthetic.image_dir has no folder for class {real.classes[cls]!r}")
            rng = np.random.default_rng(seed)
            return gen.x[rng.choice(pool, n, replace=n > len(pool))]

        return from_folder, {"source": "folder", "path": s["image_dir"], "n": int(len(gen.y))}
    from safeglass.continual.generator import for_source

    model, card = for_source(real.meta["source"], real.x[train_idx], real.y[train_idx], len(real.classes),
                             split_seed=cfg.data["split_seed"], epochs=s["epochs"], packaged=s["packaged"])
    temp = float(s["temperature"])
    return (lambda cls, n, seed: model.sample(cls, n, seed, temp)), {"source": "generator", "temperature": temp,
                                                                    **card}


class Context:
    """What every cell of a config shares: the real source, its split and the synthetic source (built once)."""

    def __init__(self, cfg: ContinualConfig) -> None:
        from safeglass.continual.streams import split

        self.cfg = cfg
        self.real = load_source(cfg)
        self.train_idx, self.test_idx = split(self.real, cfg.data["test_fraction"], cfg.data["split_seed"])
        self.sampler, self.synthetic = synthetic_source(cfg, self.real, self.train_idx)

    def stream(self, ratio: float, seed: int) -> Stream:
        from safeglass.continual.streams import make_stream

        d, c = self.cfg.data, self.cfg.contamination
        per_class = None
        if c["per_class"]:
            unknown = [k for k in c["per_class"] if k not in self.real.classes]
            if unknown:
                raise ValueError(f"{self.cfg.source}: field 'contamination.per_class': no class {unknown[0]!r}; "
                                 f"classes: {', '.join(self.real.classes)}")
            per_class = {self.real.classes.index(k): v for k, v in c["per_class"].items()}
        return make_stream(self.real, d["tasks"], scenario=d["scenario"], sampler=self.sampler, ratio=ratio,
                           per_task=c["per_task"], per_class=per_class, seed=seed,
                           test_fraction=d["test_fraction"], split_seed=d["split_seed"], order=d["class_order"],
                           train_idx=self.train_idx, test_idx=self.test_idx)


def cell_key(cfg: ContinualConfig, strategy: str, ratio: float, seed: int) -> str:
    from safeglass.hashing import content_hash

    keyed = dict(cfg.keyed)
    if "+gate" not in strategy:
        keyed.pop("gate", None)  # the gate's settings do not change a strategy without it
    return content_hash({**keyed, "contamination": {**keyed["contamination"], "ratio": ratio}, "strategy": strategy,
                         "seed": seed})


def cell_path(out: Path, strategy: str, ratio: float, seed: int) -> Path:
    return out / "cells" / f"{strategy.replace('+', '_')}-r{round(100 * ratio):03d}-s{seed}.json"


def finished_cell(path: Path, key: str) -> dict[str, Any] | None:
    """The cell a finished run wrote for this very key, else None (a file that does not parse is computed again)."""
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return done if done.get("key") == key else None


def run_cell(ctx: Context, strategy: str, ratio: float, seed: int, out: Path,
             say: Callable[[str], None]) -> dict[str, Any]:
    """One cell, read back when a finished file has its key, else trained and written."""
    import torch

    from safeglass.continual.strategies import Settings, build
    from safeglass.continual.train import learn

    cfg = ctx.cfg
    key = cell_key(cfg, strategy, ratio, seed)
    path = cell_path(out, strategy, ratio, seed)
    if (done := finished_cell(path, key)) is not None:
        return done
    torch.set_num_threads(cfg.threads)
    stream = ctx.stream(ratio, seed)
    settings = Settings(**cfg.train)
    strat = build(strategy, stream.input_dim, stream.n_classes, settings, seed, stream.scenario,
                  [t.classes for t in stream.tasks], cfg.gate)
    result = learn(stream, strat, settings.epochs, settings.batch_size, seed)
    cell = {"key": key, "strategy": strategy, "ratio": ratio, "seed": seed, "stream": stream.meta, **result}
    _write(path, cell)
    say(f"continual: {strategy:<12} ratio {ratio:.2f} seed {seed}: average accuracy "
        f"{100 * result['average_accuracy']:.1f} %, forgetting {100 * result['average_forgetting']:.1f} points "
        f"({result['seconds']:.1f} s)")
    return cell


def provenance(ctx: Context) -> dict[str, Any]:
    from safeglass.eval.provenance import library_versions

    cfg = ctx.cfg
    t = cfg.train
    return {"model": {"class": "MLP", "hidden": t["hidden"], "layers": t["layers"],
                      "input_dim": int(ctx.real.x.shape[1]), "classes": len(ctx.real.classes)},
            "data": {**ctx.real.meta, "classes": list(ctx.real.classes), "n_train": int(len(ctx.train_idx)),
                     "n_test": int(len(ctx.test_idx)), **{k: cfg.data[k] for k in ("tasks", "scenario", "split_seed",
                                                                                    "test_fraction")}},
            "synthetic": ctx.synthetic,
            "config": {"hash": cfg.hash, "source": cfg.source, "raw": cfg.raw}, "seed": cfg.seed,
            "versions": library_versions()}


def run(cfg: ContinualConfig, out: str | Path, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every strategy at the config's ratio and seed; writes OUT/continual-run.json and the plots."""
    from safeglass.continual import plots
    from safeglass.continual.report import write_report

    say, out = _say(progress), Path(out)
    t0 = time.perf_counter()
    ctx = Context(cfg)
    ratio = float(cfg.contamination["ratio"])
    say(f"continual run: {len(cfg.strategies)} strategies, ratio {ratio}, seed {cfg.seed}")
    cells = [run_cell(ctx, s, ratio, cfg.seed, out, say) for s in cfg.strategies]
    result = {"format": FORMAT, "kind": "continual run", "name": cfg.name,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **provenance(ctx),
              "ratio": ratio, "cells": {c["strategy"]: {k: v for k, v in c.items() if k != "stream"} for c in cells}}
    result["plots"] = plots.run_plots(result, out)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    _write(out / RUN_JSON, result)
    write_report(result, out)
    say(f"continual run: wrote {out / RUN_JSON} and {out / 'continual-report.html'}")
    return result


def sweep(cfg: ContinualConfig, out: str | Path, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """strategies x sweep.ratios x sweep.seeds; writes OUT/continual-sweep.json and the plots."""
    from safeglass.continual import plots
    from safeglass.continual.report import write_report

    say, out = _say(progress), Path(out)
    t0 = time.perf_counter()
    ctx = Context(cfg)
    ratios, seeds = [float(r) for r in cfg.sweep["ratios"]], list(cfg.sweep["seeds"])
    total = len(cfg.strategies) * len(ratios) * len(seeds)
    say(f"continual sweep: {len(cfg.strategies)} strategies x {len(ratios)} ratios x {len(seeds)} seeds = "
        f"{total} cells")
    cells, computed = [], 0
    for seed in seeds:
        for ratio in ratios:
            for s in cfg.strategies:
                computed += finished_cell(cell_path(out, s, ratio, seed), cell_key(cfg, s, ratio, seed)) is None
                cells.append(run_cell(ctx, s, ratio, seed, out, say))
    say(f"continual sweep: {total} cells ({computed} computed, {total - computed} reused)")
    result = {"format": FORMAT, "kind": "continual sweep", "name": cfg.name,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **provenance(ctx),
              "ratios": ratios, "seeds": seeds, "strategies": list(cfg.strategies),
              **summarise(cells, list(cfg.strategies), ratios)}
    result["cells_seconds"] = round(sum(c["seconds"] for c in cells), 2)
    result["plots"] = plots.sweep_plots(result, cells, out)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    _write(out / SWEEP_JSON, result)
    write_report(result, out)
    say(f"continual sweep: wrote {out / SWEEP_JSON} and {out / 'continual-report.html'}")
    return result


METRICS = ("average_accuracy", "average_forgetting", "backward_transfer")
ANALYSIS = ("train_accuracy_real", "train_accuracy_synthetic", "test_accuracy_real", "gap_real", "gap_synthetic",
            "confidence_real", "confidence_synthetic", "entropy_real", "entropy_synthetic",
            "entropy_auroc_real_above_synthetic")


def summarise(cells: list[dict[str, Any]], strategies: list[str], ratios: list[float]) -> dict[str, Any]:
    """Per (strategy, ratio): metrics' means and intervals over seeds, the failure-mode means, the memory's synthetic
    share after each task; per strategy the damage (accuracy at the lowest ratio minus at each ratio); per gated
    strategy the recovery at 0.5 and the cost at the lowest ratio."""
    from safeglass.continual.metrics import mean_interval

    table: dict[str, dict[str, Any]] = {}
    for s in strategies:
        table[s] = {}
        for r in ratios:
            mine = [c for c in cells if c["strategy"] == s and c["ratio"] == r]
            row: dict[str, Any] = {m: mean_interval([c[m] for c in mine]) for m in METRICS}
            for a in ANALYSIS:
                vals = [c["final"][a] for c in mine if c["final"][a] is not None]
                row[a] = float(np.mean(vals)) if vals else None
            # entropy at each task's end on its own training images: how well it tells real from synthetic
            per_task = [np.mean(v) for c in mine if (v := [t["auroc_real_above_synthetic"] for t in c["task_entropy"]
                                                          if t["auroc_real_above_synthetic"] is not None])]
            row["task_end_entropy_auroc"] = float(np.mean(per_task)) if per_task else None
            shares = [[m["synthetic_share"] for m in c["memory"]] for c in mine if c["memory"]]
            row["memory_synthetic_share"] = np.mean(shares, axis=0).tolist() if shares else None
            row["seeds"] = sorted(c["seed"] for c in mine)
            table[s][f"{r:g}"] = row
    lo = f"{min(ratios):g}"
    damage = {s: {f"{r:g}": table[s][lo]["average_accuracy"]["mean"] - table[s][f"{r:g}"]["average_accuracy"]["mean"]
                  for r in ratios} for s in strategies}
    # the same differences paired by seed (one stream and one initialisation per seed): intervals over seeds
    def acc(s: str, r: str, seed: int) -> float | None:
        return next((c["average_accuracy"] for c in cells if c["strategy"] == s and f"{c['ratio']:g}" == r
                     and c["seed"] == seed), None)

    seeds = sorted({c["seed"] for c in cells})

    def paired(a: tuple[str, str], b: tuple[str, str]) -> dict[str, float] | None:
        diffs = [100 * (x - y) for seed in seeds
                 if (x := acc(*a, seed)) is not None and (y := acc(*b, seed)) is not None]
        return mean_interval(diffs) if diffs else None

    damage_paired = {s: {f"{r:g}": paired((s, lo), (s, f"{r:g}")) for r in ratios} for s in strategies}
    mitigation = {}
    best_lo = max(table[s][lo]["average_accuracy"]["mean"] for s in strategies if "+gate" not in s)
    for s in strategies:
        base = s.split("+")[0]
        if "+gate" not in s or base not in table:
            continue
        entry: dict[str, Any] = {"base": base, "cost_points_vs_best_at_lowest_ratio":
                                 100 * (best_lo - table[s][lo]["average_accuracy"]["mean"]),
                                 "cost_points_vs_base_at_lowest_ratio":
                                 100 * (table[base][lo]["average_accuracy"]["mean"]
                                        - table[s][lo]["average_accuracy"]["mean"])}
        entry["gain_points_paired"] = {f"{r:g}": paired((s, f"{r:g}"), (base, f"{r:g}")) for r in ratios}
        if "0.5" in table[s]:
            lost = damage[base]["0.5"]
            gain = table[s]["0.5"]["average_accuracy"]["mean"] - table[base]["0.5"]["average_accuracy"]["mean"]
            entry.update({"lost_points_at_0.5": 100 * lost, "gain_points_at_0.5": 100 * gain,
                          "recovered_at_0.5": gain / lost if lost > 0 else None})
            entry["goal_met"] = bool(entry["recovered_at_0.5"] is not None and entry["recovered_at_0.5"] >= 0.5
                                     and entry["cost_points_vs_best_at_lowest_ratio"] <= 1.0)
        mitigation[s] = entry
    return {"table": table, "damage": damage, "damage_points_paired": damage_paired, "mitigation": mitigation,
            "best_at_lowest_ratio": {"ratio": float(lo), "average_accuracy": best_lo}}


def table(result: dict[str, Any]) -> str:
    """The console summary of a run or a sweep."""
    if result["kind"] == "continual run":
        rows = [f"{s:<12} acc {100 * c['average_accuracy']:5.1f} %  forgetting {100 * c['average_forgetting']:5.1f}  "
                f"BWT {100 * c['backward_transfer']:6.1f}" for s, c in result["cells"].items()]
        return "\n".join([f"{result['name']}: ratio {result['ratio']}, seed {result['seed']}", *rows])
    head = "strategy     " + "".join(f"{'r=' + f'{r:g}':>18}" for r in result["ratios"])
    rows = []
    for s, per in result["table"].items():
        cells = []
        for r in result["ratios"]:
            a = per[f"{r:g}"]["average_accuracy"]
            cells.append(f"{100 * a['mean']:6.1f} [{100 * a['ci_low']:4.1f},{100 * a['ci_high']:5.1f}]")
        rows.append(f"{s:<12} " + "".join(f"{c:>18}" for c in cells))
    for s, m in result["mitigation"].items():
        rec = m.get("recovered_at_0.5")
        shown = "n/a" if rec is None else f"{100 * rec:.0f} %"
        rows.append(f"{s}: recovers {shown} of {m.get('lost_points_at_0.5', 0):.1f} points lost at 0.5; cost at the "
                    f"lowest ratio {m['cost_points_vs_best_at_lowest_ratio']:.1f} points vs the best strategy")
    return "\n".join([f"{result['name']}: average accuracy (%), mean [95 % interval] over seeds {result['seeds']}",
                      head, *rows])


def generate(cfg: ContinualConfig, out: str | Path, per_class: int = 100, seed: int = 0) -> dict[str, Any]:
    """A folder of the config's synthetic images (`OUT/<class>/<i>.png`, readable as `synthetic: {source: folder}`)
    and OUT/generated.json recording the generator's card, the seed and the counts."""
    from safeglass.continual.streams import write_folder

    ctx = Context(cfg)
    out = Path(out)
    x = np.concatenate([ctx.sampler(c, per_class, seed * 1000 + c) for c in range(len(ctx.real.classes))])
    y = np.repeat(np.arange(len(ctx.real.classes)), per_class)
    n = write_folder(x, y, ctx.real.classes, ctx.real.shape, out, scale=1)
    record = {"format": FORMAT, "kind": "continual generate", "images": n, "per_class": per_class, "seed": seed,
              "classes": list(ctx.real.classes), **provenance(ctx)}
    _write(out / "generated.json", record)
    return record
