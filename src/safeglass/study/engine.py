"""The study engine: expand a grid, run each block of a study as one ordinary (resumable) run, read back the
rows the current plan owns, and compare every variant with a named base, paired by prompt, with intervals.

What a block's variants are (targets with glasses, defense chains, ...) is the preset's business; the engine
only needs the run config of each block and, per planned key, which (target id, defense id) owns it now.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeglass.config import ConfigError, RunConfig, parse_config
from safeglass.eval import orchestrate
from safeglass.eval.metrics import collect, paired_against
from safeglass.eval.plan import Plan
from safeglass.eval.runner import STORE_NAME, RunResult
from safeglass.eval.store import Store
from safeglass.stats import wilson_interval


def expand_axes(params: dict[str, Any], where: str, one_value: Callable[[str, Any], bool] | None = None
                ) -> list[dict[str, Any]]:
    """Every combination of a mapping's list values (a scalar is one value). ``one_value(key, value)`` says
    when a list is itself one value (glasses' ``layers: [0, 1]``; a list of such lists is then the axis).
    ``where`` names the mapping's field in the error for an empty list."""
    axes = []
    for k, v in params.items():
        values = [v] if (one_value and one_value(k, v)) or not isinstance(v, list) else v
        if not values:
            raise ConfigError(f"field '{where}.{k}' is an empty list")
        axes.append([(k, x) for x in values])
    return [dict(combo) for combo in itertools.product(*axes)]


@dataclass
class BlockRun:
    """One block of a study after its run: the run, and the rows the current plan owns, with their verdicts."""

    name: str
    dir: Path
    config: RunConfig
    plan: Plan
    result: RunResult
    seconds: float
    gens: list[dict[str, Any]] = field(default_factory=list)
    judges: dict[str, dict[str, Any]] = field(default_factory=dict)  # by spec id, each with its "key"
    meta: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def provenance(self) -> dict[str, Any]:
        return {"dir": str(self.dir), "planned": self.result.planned, "done_before": self.result.done_before,
                "generated": self.result.generated, "failed": self.result.failed, "seconds": round(self.seconds, 3),
                "n_prompts": sum(len(ds.samples) for ds in self.plan.datasets.values()),
                "config_hash": self.config.hash, "errors": len(self.errors)}


def run_block(name: str, raw: dict[str, Any], run_dir: Path, *, source: str, limit: int | None = None,
              progress: bool = True, workers: int = 1,
              finish: orchestrate.Finisher | None = None) -> BlockRun:
    """Run one block's config (resuming whatever is stored) and read back what its plan owns."""
    import yaml

    run_cfg = parse_config(raw, source=source)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    t0 = time.perf_counter()
    result = orchestrate.run(run_cfg, out=run_dir, limit=limit, progress=progress, workers=workers, finish=finish)
    block = BlockRun(name, run_dir, run_cfg, result.plan, result, time.perf_counter() - t0)
    owners = {it.key: (it.target, it.defense) for it in block.plan.items}
    block.gens, block.judges, block.meta, block.errors = store_view(run_dir, owners)
    return block


def store_view(run_dir: Path, owners: dict[str, tuple[str, str]]) -> tuple[
        list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """(generations of the plan with verdicts, judges by spec id, store meta, unresolved errors).

    ``owners`` maps each planned key to its (target id, defense id) in the current plan: a stored row keeps
    the ids of the run that generated it, and a variant renamed since (same key) must still find its rows."""
    with Store(run_dir / STORE_NAME) as store:
        gens, judges = collect(store)
        gens = [{**g, "target": owners[g["key"]][0], "defense": owners[g["key"]][1]} for g in gens
                if g["key"] in owners]
        meta = {k: store.get_meta(k) for k in ("versions", "config_hash", "created", "components")}
        for tid in {t for t, _ in owners.values()}:
            meta[f"target_label:{tid}"] = store.get_meta(f"target_label:{tid}")
            meta[f"target_config:{tid}"] = store.get_meta(f"target_config:{tid}")
        done = {g["key"] for g in gens}
        errors = [e for e in store.errors() if e["key"] in owners and e["key"] not in done]
    by_id = {j.get("id", key): {**j, "key": key} for key, j in judges.items()}
    return gens, by_id, meta, errors


def prompt_rates(gens: Iterable[dict[str, Any]], judge_key: str, kinds: tuple[str, ...] | None = None
                 ) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (target, defense): the per-prompt rate (>= 1 flagged of the prompt's k completions) and the
    per-completion rate of one judge, with Wilson intervals, plus the per-prompt indicators for pairing
    (``_per_prompt``). The definitions of eval.metrics' toxic_prompt_rate / harmful_prompt_rate."""
    flags: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for g in gens:
        if kinds is not None and g["kind"] not in kinds:
            continue
        v = g["verdicts"].get(judge_key)
        if v is None:
            continue
        flags[(g["target"], g["defense"])][g["sample_id"]].append(int(bool(v["flag"])))
    out = {}
    for key, by_prompt in flags.items():
        per_prompt = {sid: int(any(vals)) for sid, vals in by_prompt.items()}
        n, k = len(per_prompt), sum(per_prompt.values())
        nc, kc = sum(len(v) for v in by_prompt.values()), sum(sum(v) for v in by_prompt.values())
        lo, hi = wilson_interval(k, n)
        clo, chi = wilson_interval(kc, nc)
        out[key] = {"rate": k / n if n else None, "ci_low": lo, "ci_high": hi, "k": k, "n": n,
                    "completion_rate": kc / nc if nc else None, "completion_ci_low": clo, "completion_ci_high": chi,
                    "k_completions": kc, "n_completions": nc, "_per_prompt": per_prompt}
    return out


def compare(rates: dict[tuple[str, str], dict[str, Any]], key: tuple[str, str], base: tuple[str, str],
            seed: int = 0, resamples: int = 2000) -> dict[str, Any] | None:
    """A variant's per-prompt indicators against the base's, paired by prompt (None for the base itself or
    when they share no prompt): the difference, its bootstrap interval and p-value."""
    if key == base or key not in rates or base not in rates:
        return None
    return paired_against(rates[key]["_per_prompt"], rates[base]["_per_prompt"], seed, resamples)


def comparison_rows(rates: dict[tuple[str, str], dict[str, Any]], base: tuple[str, str], measure: str,
                    seed: int = 0) -> list[dict[str, Any]]:
    """One row per (target, defense) of a block's rates: the rate with its interval and the paired comparison
    with `base` (None for the base itself), ready for ``comparison_section``."""
    rows = []
    for key in sorted(rates, key=lambda k: (k != base, k)):
        r = rates[key]
        rows.append({"target": key[0], "defense": key[1], "measure": measure, "rate": r["rate"],
                     "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"], "is_base": key == base,
                     "vs_base": compare(rates, key, base, seed)})
    return rows


def comparison_section(title: str, rows: list[dict[str, Any]], *, base_label: str, anchor: str = "") -> Any:
    """A report section with a study's comparison: each variant's rate, its interval and its paired difference
    from the base (interval and p-value), coloured by rate on the report's scale."""
    from safeglass.reporting.sections import Section, ci, escape, pct, pp, scale_class, table_wrap
    from safeglass.stats import format_p

    head = ("<tr><th>target</th><th>defense</th><th>measure</th><th>rate [95% CI]</th><th>n</th>"
            f"<th>vs {escape(base_label)} [95% CI]</th><th>p</th></tr>")
    body = []
    for r in rows:
        cmp = r.get("vs_base") or {}
        delta = "base" if r.get("is_base") else (f"{pp(cmp.get('delta'))} {ci(cmp.get('ci_low'), cmp.get('ci_high'))}"
                                                 if cmp else "n/a")
        body.append(f"<tr><td>{escape(r['target'])}</td><td>{escape(r['defense'])}</td><td>{escape(r['measure'])}</td>"
                    f"<td class='{scale_class(r['rate'])}'>{escape(pct(r['rate']))} "
                    f"{escape(ci(r['ci_low'], r['ci_high']))}</td><td>{escape(r['n'])}</td><td>{escape(delta)}</td>"
                    f"<td>{escape(format_p(cmp.get('p_value')) if cmp else '')}</td></tr>")
    table = table_wrap(f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>")
    return Section(title=title, body=table, anchor=anchor)
