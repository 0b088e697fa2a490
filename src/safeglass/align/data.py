"""The audit's data, all from what the project already packages (no new harmful text is written here):

* alignment examples (the forget set): AdvBench and Do-Not-Answer prompts, the pool SafeSmol trained its
  refusals on, clear of the held-out sets by normalised text and containment, each with a refusal drawn from
  SafeSmol's refusal templates (``organisms/resources/safesmol_refusals.json``);
* retain set: SafeSmol's benign training prompts, answered greedily by the audited model itself;
* held-out harmful prompts: StrongREJECT and HarmBench test (standard behaviours), never trained on;
* benign look-alikes (``data/lookalikes``): over-refusal;
* fluency pairs: SafeSmol's card's held-out benign prompts with the base model's answers (perplexity), else
  benign prompts with the audited model's own answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from safeglass.align.measure import Pair


@dataclass
class AlignData:
    forget: list[Pair]
    retain: list[Pair]
    heldout: list[Pair]  # held-out harmful prompts (answer: the generic refusal opening)
    lookalikes: list[Pair]
    fluency: list[Pair]
    provenance: dict[str, Any]


def _subset(items: list[Any], n: int, rng: np.random.Generator) -> list[Any]:
    return items if n >= len(items) else [items[i] for i in sorted(rng.permutation(len(items))[:n])]


def _short(text: str, max_chars: int) -> bool:
    return len(text) <= max_chars


def build_data(model: Any, tokenizer: Any, spec: dict[str, Any], seed: int, *, card: dict[str, Any] | None = None,
               say: Callable[[str], None] = print) -> AlignData:
    """The audit's sets for a loaded model. `spec` is the config's data block; `card` an organism's card (its
    fluency set is used when present)."""
    from safeglass.align.measure import REFUSE_OPENER
    from safeglass.data.lookalikes import load_benign_lookalikes
    from safeglass.data.packaged import load_advbench, load_donotanswer, load_harmbench, load_strongreject
    from safeglass.organisms import safesmol

    rng = np.random.default_rng([seed, 20])
    mc = int(spec["max_prompt_chars"])
    strong = [s for s in load_strongreject() if _short(s.prompt, mc)]
    harm = [s for s in load_harmbench(split="test") if not s.metadata.get("context") and s.category != "copyright"
            and _short(s.prompt, mc)]
    heldout_all = safesmol.heldout_prompts() + safesmol.lookalike_prompts(val=True)
    cands = [s for s in load_advbench()] + [s for s in load_donotanswer()
                                            if s.category in safesmol.DONOTANSWER_AREAS]
    cands = [s for s in cands if _short(s.prompt, mc)]
    why = safesmol.overlaps([s.prompt for s in cands], heldout_all)
    pool = [s for s, w in zip(cands, why) if w is None]
    forget_src = _subset(pool, int(spec["forget_n"]), rng)
    rrng = np.random.default_rng([seed, 21])
    forget = [Pair(s.id, s.prompt, safesmol.refusal_for(s.prompt, rrng)) for s in forget_src]

    benign = [b for b in safesmol.load_benign_train() if _short(b["prompt"], mc)]
    benign = _subset(benign, int(spec["retain_n"]) + int(spec["fluency_n"]), rng)
    answers = _answers(model, tokenizer, [b["prompt"] for b in benign], int(spec["answer_tokens"]))
    answered = [Pair(b["id"], b["prompt"], a) for b, a in zip(benign, answers) if a.strip()]
    retain = answered[:int(spec["retain_n"])]
    fluency_src = "audited model's answers to benign prompts"
    fluency = answered[int(spec["retain_n"]):]
    if card is not None and card.get("fluency_set"):
        fluency = [Pair(f["id"], f["prompt"], f["answer"]) for f in card["fluency_set"]][:int(spec["fluency_n"])]
        fluency_src = "the organism card's fluency set (held-out benign prompts, the base model's answers)"

    n_h = int(spec["heldout_n"])
    held = _subset(strong, n_h - n_h // 2, rng) + _subset(harm, n_h // 2, rng)
    looks = _subset([s for s in load_benign_lookalikes() if _short(s.prompt, mc)], int(spec["lookalikes_n"]), rng)
    prov = {"forget": {"sources": "advbench + donotanswer (SafeSmol's harmful areas)", "pool": len(pool),
                       "dropped_heldout_overlap": sum(w is not None for w in why), "n": len(forget),
                       "refusals": "safesmol_refusals.json templates"},
            "retain": {"source": "safesmol_benign_train.jsonl, answered by the audited model", "n": len(retain)},
            "heldout": {"source": "strongreject + harmbench test (standard)", "n": len(held)},
            "lookalikes": {"source": "benign look-alikes (card split)", "n": len(looks)},
            "fluency": {"source": fluency_src, "n": len(fluency)},
            "max_prompt_chars": mc, "seed": seed}
    say(f"align: {len(forget)} alignment examples, {len(retain)} retain, {len(held)} held-out harmful, "
        f"{len(looks)} look-alikes, {len(fluency)} fluency pairs")
    return AlignData(forget, retain, [Pair(s.id, s.prompt, REFUSE_OPENER) for s in held],
                     [Pair(s.id, s.prompt, REFUSE_OPENER) for s in looks], fluency, prov)


def _answers(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> list[str]:
    from safeglass.organisms.replies import greedy_replies
    from safeglass.targets.hf_lm import HFCausalLM
    from safeglass.types import Turn

    target = HFCausalLM.from_model(model, tokenizer, name="align", batch_size=16)
    gens = greedy_replies(target, [(Turn("user", p),) for p in prompts], max_new_tokens, "align retain answers",
                          show=False)
    return [g.text.strip() for g in gens]


def with_wordings(pairs: list[Pair], k: int, seed: int) -> list[Pair]:
    """Each pair, then up to k - 1 more pairs of its prompt with other refusals of SafeSmol's templates (distinct
    wordings, seeded per example): what an unlearning attack trains on when one refusal string per prompt only
    moves the model to its other wordings. k = 1: the pairs as given."""
    from safeglass.organisms import safesmol

    if k <= 1:
        return list(pairs)
    out: list[Pair] = []
    for n, p in enumerate(pairs):
        rng = np.random.default_rng([seed, 22, n])
        seen = [p.answer]
        for _ in range(20 * k):  # the templates for one prompt are few: stop when k are found or the draws run out
            if len(seen) == k:
                break
            r = safesmol.refusal_for(p.prompt, rng)
            if r not in seen:
                seen.append(r)
        out += [Pair(p.id if j == 0 else f"{p.id}~{j}", p.prompt, r) for j, r in enumerate(seen)]
    return out
