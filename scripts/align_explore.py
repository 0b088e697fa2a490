"""Which unlearning budget moves a model's refusals? One model load, several unlearning runs over the whole
alignment set, each read by the several-openings margins and, at its end, by the judges (docs/alignment.md,
"Experiment log"). Reuses a finished audit's data phase, so the sets are the audit's.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/align_explore.py configs/align-safesmol.yaml runs/align-safesmol \
        OUT.json npo:0.01:16:4 ga:0.002:16:4 rmu:0.002:16:1      # method:lr:steps:wordings
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(config: str, audit_dir: str, out_path: str, specs: list[str]) -> None:
    from safeglass.align import attack as atk
    from safeglass.align import audit as A
    from safeglass.align.config import load_align_config
    from safeglass.align.data import AlignData, with_wordings
    from safeglass.align.measure import judged_refusal, margins, prompt_margins
    from safeglass.align.unlearn import MethodConfig, Unlearner
    from safeglass.training.threads import pinned_threads

    cfg = load_align_config(config)
    raw = json.loads((Path(audit_dir) / "phases" / "data.json").read_text(encoding="utf-8"))["result"]
    data = AlignData(*(A._pairs(raw[k]) for k in ("forget", "retain", "heldout", "lookalikes", "fluency")),
                     provenance=raw["provenance"])
    openers = tuple(cfg.eval["openers"] or ())
    held = [p.prompt for p in data.heldout]
    out: list[dict] = []
    with pinned_threads(cfg.threads):
        model, tok, _, _ = A.load_model(cfg)
        judges = atk.build_judges(cfg.eval["judges"])
        base = {k: v for k, v in cfg.method.items() if k not in ("wordings", "name")}
        unl = Unlearner(model, tok, MethodConfig(**base), seed=cfg.seed)
        for spec in specs:
            method, lr, steps, wordings = spec.split(":")
            unl.reset()
            t0, rows = time.time(), []

            def probe(step: int, rows: list = rows, t0: float = t0, spec: str = spec) -> None:
                fm = margins(unl.model, tok, data.forget, openers=openers)
                hm = prompt_margins(unl.model, tok, held, openers)
                rows.append({"step": step, "forget_flipped": sum(m < 0 for m in fm),
                             "forget_mean_margin": round(sum(fm) / len(fm), 4),
                             "heldout_margin_refusal": round(sum(m >= 0 for m in hm) / len(hm), 4),
                             "heldout_mean_margin": round(sum(hm) / len(hm), 4)})
                print(spec, rows[-1], f"{time.time() - t0:.0f}s", flush=True)

            unl.run(method, with_wordings(data.forget, int(wordings), cfg.seed), int(steps), retain=data.retain,
                    lr=float(lr), stream=1, every=max(1, int(steps) // 4), probe=probe, say=lambda s: None)
            judged = judged_refusal(unl.model, tok, held, judges, max_new_tokens=int(cfg.eval["max_new_tokens"]),
                                    batch=int(cfg.eval["batch_size"]))
            print(spec, "judged", {k: v["rate"] for k, v in judged.items() if k != "examples"}, flush=True)
            out.append({"spec": spec, "curve": rows, "judged": judged, "seconds": round(time.time() - t0)})
            Path(out_path).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
