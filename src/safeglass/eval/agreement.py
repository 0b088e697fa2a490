"""Agreement of two judges over a finished run, per row: which figures depend on the choice of judge.

``safeglass judges agree RUN_DIR --judges A B`` (judge A and B must have judged the run: ``safeglass rejudge RUN_DIR
--judges A B`` first). Rows are the report's (target, dataset, defense, attack) cells; each gets n, both judges'
flag rates, the share of samples on which they agree and Cohen's kappa, and is flagged when agreement is below 0.9
or kappa below 0.6 (kappa only where neither judge gives one answer on more than 90 % of the row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safeglass.eval.crash import UsageError
from safeglass.eval.runner import run_store
from safeglass.eval.store import Store
from safeglass.judges.agreement import MIN_AGREEMENT, MIN_KAPPA, kappa, row_agreement

__all__ = ["ROW_FIELDS", "format_agreement", "run_agreement", "summary_agreement"]

ROW_FIELDS = ("target", "dataset", "defense", "attack")
# Outcome measures two judges can be compared on (signal and accuracy judges answer other questions).
COMPARED_MEASURES = ("refusal", "harm", "toxicity")


def _resolve(name: str, keys: set[str]) -> str:
    if name in keys:
        return name
    hits = sorted(k for k in keys if k.split("@", 1)[0] == name)
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise UsageError(f"judge {name!r} has not judged this run (judged: {', '.join(sorted(keys)) or 'none'}); "
                         f"run `safeglass rejudge RUN_DIR --judges {name}` first")
    raise UsageError(f"judge {name!r} is ambiguous here: {', '.join(hits)}; name one key")


def run_agreement(run_dir: str | Path, judge_a: str, judge_b: str, *, min_kappa: float = MIN_KAPPA,
                  min_agreement: float = MIN_AGREEMENT) -> dict[str, Any]:
    """Per-row and overall agreement of two judges' stored flags on the samples both judged."""
    with Store(run_store(run_dir)) as store:
        flags: dict[str, dict[str, bool]] = {}
        for j in store.judgments():
            flags.setdefault(j["judge"], {})[j["key"]] = bool(j["flag"])
        a, b = _resolve(judge_a, set(flags)), _resolve(judge_b, set(flags))
        both = set(flags[a]) & set(flags[b])
        pairs = []
        for g in store.generations(both):
            pairs.append((tuple(g[f] for f in ROW_FIELDS), flags[a][g["key"]], flags[b][g["key"]]))
    return _compare(a, b, pairs, min_kappa, min_agreement)


def _compare(a: str, b: str, pairs: list[tuple[tuple, bool, bool]], min_kappa: float,
             min_agreement: float) -> dict[str, Any]:
    """Overall and per-row agreement of two judges' flags: ``pairs`` of (row key, flag of a, flag of b)."""
    rows = row_agreement(pairs, min_kappa=min_kappa, min_agreement=min_agreement)
    fa, fb = [p[1] for p in pairs], [p[2] for p in pairs]
    return {"judge_a": a, "judge_b": b, "n": len(pairs), "row_fields": list(ROW_FIELDS),
            "agreement": (sum(x == y for x, y in zip(fa, fb)) / len(pairs)) if pairs else None,
            "kappa": kappa(fa, fb), "min_kappa": min_kappa, "min_agreement": min_agreement,
            "rows": [{**dict(zip(ROW_FIELDS, k)), **v} for k, v in sorted(rows.items())]}


def summary_agreement(gens: list[dict[str, Any]], judges: dict[str, dict[str, Any]], *,
                      min_kappa: float = MIN_KAPPA, min_agreement: float = MIN_AGREEMENT) -> list[dict[str, Any]]:
    """For every outcome measure two or more of a run's judges score, each pair's agreement over the replies both
    judged, overall and per report row (``metrics.collect``'s generations and judges); what the run summary
    carries, so the report flags rows where the figure depends on the judge without a command being run."""
    out = []
    for measure in COMPARED_MEASURES:
        keys = [k for k, j in judges.items() if j.get("measure") == measure]
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                pairs = [(tuple(g[f] for f in ROW_FIELDS), bool(g["verdicts"][a]["flag"]),
                          bool(g["verdicts"][b]["flag"]))
                         for g in gens if a in g["verdicts"] and b in g["verdicts"]]
                if pairs:
                    out.append({"measure": measure, **_compare(a, b, pairs, min_kappa, min_agreement)})
    return out


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def format_agreement(result: dict[str, Any]) -> str:
    lines = [f"{result['judge_a']} vs {result['judge_b']}: {result['n']} samples, agreement "
             f"{_f(result['agreement'])}, kappa {_f(result['kappa'])}", "",
             f"{'target':<18} {'dataset':<18} {'defense':<14} {'attack':<14} {'n':>5} {'rate A':>7} {'rate B':>7} "
             f"{'agree':>6} {'kappa':>6}"]
    for r in result["rows"]:
        lines.append(f"{r['target'][:18]:<18} {r['dataset'][:18]:<18} {r['defense'][:14]:<14} {r['attack'][:14]:<14} "
                     f"{r['n']:>5} {r['rate_a']:>7.3f} {r['rate_b']:>7.3f} {r['agreement']:>6.3f} "
                     f"{_f(r['kappa']):>6}{'  <- judges disagree' if r['flagged'] else ''}")
    return "\n".join(lines)
