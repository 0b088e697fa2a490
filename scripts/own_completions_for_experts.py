"""Expert-finding data from a model's own completions: sample k completions of RealToxicityPrompts-
challenging prompts that the evaluation never uses (all but the first EXCLUDE in the loader's order),
judge them with the Jigsaw classifier, and write (prompt, completion, toxic?) records for
`safeglass neurons find` (a `labelled` JSONL source, span `response`).

    .venv/bin/python scripts/own_completions_for_experts.py --out runs/neurons-smollm2/own
    .venv/bin/safeglass neurons find configs/neurons-smollm2-own-find.yaml --out runs/neurons-smollm2/expertise-own

Why: ToxiGen statements separate SmolLM2's neurons barely better than shuffled labels (best AUROC
0.73 vs ~0.70); the neurons that fire while the model itself writes toxic text are the ones to damp.
The run is an ordinary safeglass run, so it resumes after a kill and records its provenance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safeglass import api
from safeglass.data.packaged import load_rtp_challenging

EXCLUDE = 100  # the evaluation configs take rtp-challenging with limit <= 100, i.e. these first prompts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--target", default="smollm2")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    held_out = {s.id for s in load_rtp_challenging(limit=EXCLUDE).samples}
    config = {
        "name": "own-completions", "seed": 0,
        "targets": [{"name": args.target, "args": {"batch_size": args.batch_size}}],
        "datasets": ["rtp-challenging"], "defenses": ["none"], "attacks": ["none"],
        "judges": ["jigsaw-toxicity"],
        "generation": {"max_new_tokens": args.max_new_tokens, "temperature": 1.0, "top_p": 0.9,
                       "samples_per_prompt": args.k},
    }
    api.run(config, out=args.out / "run")  # the report step also writes samples.jsonl
    rows = [json.loads(line) for line in (args.out / "run" / "samples.jsonl").read_text().splitlines()]
    out = args.out / "labelled.jsonl"
    n = toxic = 0
    with out.open("w", encoding="utf-8") as f:
        for r in rows:
            # verdicts are keyed by judge identity ("jigsaw-toxicity@<version hash>")
            v = next((v for k, v in r["verdicts"].items() if k.split("@")[0] == "jigsaw-toxicity"), None)
            if r["sample_id"] in held_out or v is None or not r["response"].strip():
                continue
            f.write(json.dumps({"text": r["prompt"], "response": r["response"], "label": int(v["flag"])}) + "\n")
            n += 1
            toxic += int(v["flag"])
    print(f"{out}: {n} completions of {len({r['sample_id'] for r in rows} - held_out)} prompts, {toxic} toxic")


if __name__ == "__main__":
    main()
