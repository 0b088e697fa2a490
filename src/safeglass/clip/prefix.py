"""Defense-Prefix (Azuma & Matsui, ICCV 2023 workshops): one learned token written before the class name,
"a photo of a [DP] circle", trained so that typographic images are classified as their true class while the
class names keep their meaning. Both towers stay frozen; only the token's embedding (one row of width D) trains.

The token is not in any vocabulary (ShapeCLIP's word-level tokenizer has 58 words): texts are tokenized as
usual, a placeholder id is inserted where the class name starts, and a forward hook on the text tower's token
embedding writes the learned vector at those positions. The packaged model is never changed, and the hook is
removed in `finally`.

Training (`train`): image features are computed once (the image tower is frozen), then Adam on
    defense loss   cross-entropy of the prefixed zero-shot head on the typographic and clean fitting images
                   (true labels)
  + identity loss  mean (1 - cosine) between each name's prefixed and original text embedding, over many names
                   (ShapeCLIP: every word of its vocabulary; a large vocabulary: the class names), so the token
                   changes how images are read against class names, not what the names mean.
The paper's identity loss keeps the prefixed names' text features matching the originals' over many class names;
here that match is measured by cosine distance, and its weight is a setting.

    token = train(backend, fit_clean, fit_typo, labels, classes, templates, PrefixSettings(seed=0))
    emb = class_embeddings(backend, token.vector, classes, templates)      # [C, D] for zeroshot.logits
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PrefixSettings:
    steps: int = 100
    lr: float = 0.01
    identity_weight: float = 1.0
    seed: int = 0


@dataclass
class Prefix:
    vector: Any                  # [D] the learned token embedding
    trace: dict[str, Any]        # losses at the start and end, settings, identity names


def _placeholder(tokenizer: Any) -> int:
    # Any id but the end token works (its embedding is overwritten); CLIP pools at the end token, found by id
    for tid in (tokenizer.bos_token_id, tokenizer.pad_token_id, 0):
        if tid is not None and tid != tokenizer.eos_token_id:
            return int(tid)
    raise ValueError("prefix: the tokenizer has no id to hold the learned token")


def _insert_at(tokenizer: Any, template: str) -> int:
    """Where the class name's first token sits in a tokenized `template`: after the template's own prefix."""
    ids = tokenizer(template.split("{}")[0].rstrip())["input_ids"]
    return len(ids) - (1 if ids and ids[-1] == tokenizer.eos_token_id else 0)


def tokenize(backend: Any, texts_by_template: Sequence[tuple[str, str]]) -> tuple[Any, Any, Any]:
    """(input_ids, attention_mask, token_mask) for (template, class name) pairs, the learned token inserted
    before each class name; token_mask marks its position."""
    import torch

    tok = backend.tokenizer
    ph = _placeholder(tok)
    rows = []
    for template, name in texts_by_template:
        ids = list(tok(template.format(name))["input_ids"])
        k = _insert_at(tok, template)
        rows.append((ids[:k] + [ph] + ids[k:], k))
    if backend.family == "siglip":  # SigLIP pools the last position of max-length padding
        width = int(backend.model.config.text_config.max_position_embeddings)
    else:
        width = max(len(r) for r, _ in rows)
    if any(len(r) > width for r, _ in rows):
        raise ValueError(f"prefix: a prefixed text is longer than the text tower's {width} positions")
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (r, k) in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        att[i, :len(r)] = 1
        mask[i, k] = True
    return ids, att, mask


def _token_embedding(backend: Any) -> Any:
    return backend.model.text_model.embeddings.token_embedding


@contextlib.contextmanager
def _written(backend: Any, vector: Any, mask: Any) -> Iterator[None]:
    """Within the block, the token embedding returns `vector` at the positions `mask` marks."""
    import torch

    def hook(_module: Any, _args: Any, out: Any) -> Any:
        return torch.where(mask[..., None], vector.to(out.dtype), out)

    handle = _token_embedding(backend).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def encode(backend: Any, vector: Any, pairs: Sequence[tuple[str, str]]) -> Any:
    """[N, D] unit-norm text embeddings of the prefixed (template, name) pairs; differentiable in `vector`."""
    from safeglass.clip.backends import _features

    ids, att, mask = tokenize(backend, pairs)
    args = {"input_ids": ids}
    if backend.family == "clip":
        args["attention_mask"] = att
    with _written(backend, vector, mask):
        f = _features(backend.model.get_text_features(**args)).float()
    return f / f.norm(dim=-1, keepdim=True)


def class_embeddings(backend: Any, vector: Any, classes: Sequence[str], templates: Sequence[str]) -> Any:
    """[C, D] prefixed class embeddings, one template ensemble a class (as `zeroshot.TextCache` builds them)."""
    f = encode(backend, vector, [(t, c) for c in classes for t in templates])
    f = f.reshape(len(classes), len(templates), -1).mean(1)
    return f / f.norm(dim=-1, keepdim=True)


def identity_names(backend: Any, classes: Sequence[str], limit: int = 1000) -> list[str]:
    """The names the identity loss keeps in place: a small word-level vocabulary whole (ShapeCLIP's 54 words),
    else the class names."""
    vocab = backend.tokenizer.get_vocab()
    if len(vocab) > limit:
        return list(classes)
    special = set(backend.tokenizer.all_special_tokens)
    words = [w for w, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if w not in special and w.isalpha()]
    return list(dict.fromkeys([*classes, *words]))


@contextlib.contextmanager
def _frozen(model: Any) -> Iterator[None]:
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def train(backend: Any, clean: np.ndarray, attacked: np.ndarray, labels: np.ndarray, classes: Sequence[str],
          templates: Sequence[str], settings: PrefixSettings = PrefixSettings(),
          features: tuple[Any, Any] | None = None) -> Prefix:
    """The learned token: defense loss on the clean and attacked images (true labels) plus identity loss."""
    import torch

    f_clean, f_typo = features if features is not None else (backend.encode_images(clean),
                                                             backend.encode_images(attacked))
    feats = torch.cat([f_clean, f_typo]).detach()
    y = torch.as_tensor(np.concatenate([labels, labels]), dtype=torch.long)
    names = identity_names(backend, classes)
    pairs = [(t, n) for n in names for t in templates]
    table = _token_embedding(backend).weight.detach()
    gen = torch.Generator().manual_seed(settings.seed)
    # seeded, at the scale of the real token embeddings
    vector = (torch.randn(table.shape[1], generator=gen) * table.std()).requires_grad_(True)
    opt = torch.optim.Adam([vector], lr=settings.lr)
    scale = backend.logit_scale()
    with torch.no_grad():
        original = backend.encode_text([t.format(n) for t, n in pairs]).detach().clone()
    history = []
    with _frozen(backend.model), torch.enable_grad():
        for step in range(settings.steps):
            emb = class_embeddings(backend, vector, classes, templates)
            defense = torch.nn.functional.cross_entropy(scale * feats @ emb.T, y)
            identity = (1 - (encode(backend, vector, pairs) * original).sum(-1)).mean()
            loss = defense + settings.identity_weight * identity
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step == 0 or step == settings.steps - 1 or (step + 1) % 50 == 0:
                history.append({"step": step + 1, "defense": round(float(defense.detach()), 5),
                                "identity": round(float(identity.detach()), 6)})
    trace = {"settings": {"steps": settings.steps, "lr": settings.lr, "identity_weight": settings.identity_weight,
                          "seed": settings.seed},
             "identity_names": len(names), "fit_images": int(len(y)), "history": history}
    return Prefix(vector.detach().clone(), trace)


def defend(backend: Any, fit: Any, fit_att: Any, test: Any, test_att: Any, templates: Sequence[str],
           settings: PrefixSettings, test_features: tuple[Any, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Train on the fitting split, return (test correctness (clean, typographic), record) for the scorer."""
    import torch

    from safeglass.clip.scoring import correct_from_features

    fit_features = (backend.encode_images(fit.images), backend.encode_images(fit_att.images))
    token = train(backend, fit.images, fit_att.images, fit.labels, fit.classes, templates, settings, fit_features)
    f_clean, f_typo = test_features if test_features is not None else (backend.encode_images(test.images),
                                                                       backend.encode_images(test_att.images))
    with torch.no_grad():
        emb = class_embeddings(backend, token.vector, test.classes, templates)
        fit_emb = emb if tuple(fit.classes) == tuple(test.classes) else \
            class_embeddings(backend, token.vector, fit.classes, templates)
        fc, ft = correct_from_features(backend, *fit_features, fit_emb, fit.labels)
    token.trace.update(fit_clean=round(float(fc.mean()), 4), fit_typographic=round(float(ft.mean()), 4),
                       vector_norm=round(float(token.vector.norm()), 4))
    return correct_from_features(backend, f_clean, f_typo, emb, test.labels), token.trace
