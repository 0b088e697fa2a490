"""`clip defend`'s methods side by side: Dyslexify's head ablation (already fitted by `run.defend`),
Defense-Prefix and PAINT, each fitted on the `fit` split and scored by `scoring.score` against the same
undefended correctness on the same held-out images, so their clean / typographic / recovered / clean-loss
figures are directly comparable."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from safeglass.clip.scoring import Correct, score


def prefix_settings(block: dict[str, Any], seed: int) -> Any:
    from safeglass.clip.prefix import PrefixSettings

    return PrefixSettings(steps=int(block["steps"]), lr=float(block["lr"]),
                          identity_weight=float(block["identity_weight"]), seed=seed)


def paint_settings(block: dict[str, Any], seed: int) -> Any:
    from safeglass.clip.paint import PaintSettings

    return PaintSettings(epochs=int(block["epochs"]), lr=float(block["lr"]),
                         weight_decay=float(block["weight_decay"]), batch_size=int(block["batch_size"]),
                         alphas=tuple(float(a) for a in block["alphas"]), select_share=float(block["select_share"]),
                         seed=seed)


def methods(backend: Any, defend: dict[str, Any], seed: int, fit: Any, fit_att: Any, test: Any, test_att: Any,
            templates: Sequence[str], cache: Any, base: Correct, dyslexify: Correct | None = None,
            kept: Sequence[Sequence[int]] = (), say: Callable[[str], None] = lambda _line: None) -> dict[str, Any]:
    """{method: its score on the held-out split and what was fitted}, in the order `defend.methods` lists."""
    out: dict[str, Any] = {}
    for name in defend["methods"]:
        start = time.perf_counter()
        if name == "dyslexify":
            if dyslexify is None:
                raise ValueError("compare: dyslexify's held-out correctness was not computed")
            correct, record = dyslexify, {"heads": [list(h) for h in kept]}
        elif name == "prefix":
            from safeglass.clip.prefix import defend as prefix_defend

            say("clip defend: training the Defense-Prefix token on the fitting split")
            correct, record = prefix_defend(backend, fit, fit_att, test, test_att, templates,
                                            prefix_settings(defend["prefix"], seed))
        elif name == "paint":
            from safeglass.clip.paint import defend as paint_defend

            say("clip defend: PAINT: fine-tuning the image tower and interpolating")
            correct, record = paint_defend(backend, fit, fit_att, test, test_att, templates,
                                           paint_settings(defend["paint"], seed),
                                           defend["max_clean_drop_points"] / 100, cache)
        else:
            raise ValueError(f"compare: unknown defense {name!r}")
        # the goal (>= 50 % recovered at <= 1 point clean loss) for every method, as for Dyslexify
        out[name] = {**score(base, correct, seed), **record}
        if name != "dyslexify":  # Dyslexify was fitted before; its time is in the result's total
            out[name]["seconds"] = round(time.perf_counter() - start, 2)
    return out


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The console table's lines for the methods side by side."""
    def pct(p: dict[str, Any]) -> str:
        return f"{100 * p['rate']:5.1f} %"

    u = result["undefended"]
    out = [("undefended: clean / typographic", f"{pct(u['clean'])} / {pct(u['typographic'])}")]
    for name, m in result["methods"].items():
        rec = "n/a" if m["recovered"] is None else f"{100 * m['recovered']:.1f} %"
        cl = m["paired"]["clean_loss_points"]
        extra = f", a = {m['alpha']:g}" if name == "paint" else ""
        out.append((f"{name}: clean / typographic", f"{pct(m['clean'])} / {pct(m['typographic'])}{extra}"))
        out.append((f"{name}: recovered, clean loss", f"{rec}, {m['clean_loss_points']:.2f} points "
                                                      f"[{cl['ci_low']:.2f}, {cl['ci_high']:.2f}]"))
    return out
