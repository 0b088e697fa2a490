"""The SCAM protocol for CLIP (Westerhoff et al., 2025): for each attacked image, a two-way zero-shot choice between
the object's label and the attack word, made under each template and averaged over templates.

Per template, an image counts for the object when its similarity to "template(object)" beats "template(word)",
for the attack when the word's is higher (a tie counts for neither). The headline is the object rate averaged
over templates; the per-image majority over templates gets a Wilson interval (the templates of one image are
not independent trials).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from safeglass.clip.zeroshot import TextCache
from safeglass.stats import proportion


def scam(backend: Any, images: Any, objects: Sequence[str], words: Sequence[str], templates: Sequence[str],
         cache: TextCache, image_features: Any = None) -> dict[str, Any]:
    """Object-vs-attack-word choice for each (image, object label, attack word), averaged over templates."""
    if not (len(objects) == len(words) == len(images if image_features is None else image_features)):
        raise ValueError("scam: give one object label and one attack word per image")
    if any(o == w for o, w in zip(objects, words)):
        raise ValueError("scam: an attack word equals its image's object label; the choice would be a tie")
    vocab = sorted(set(objects) | set(words))
    index = {v: i for i, v in enumerate(vocab)}
    feats = backend.encode_images(images) if image_features is None else image_features
    text = cache.per_template(backend, vocab, templates)           # [T, V, D]
    sims = np.einsum("nd,tvd->tnv", feats.numpy(), text.numpy())   # [T, N, V]
    rows = np.arange(len(objects))
    obj = sims[:, rows, [index[o] for o in objects]]
    att = sims[:, rows, [index[w] for w in words]]
    obj_wins, att_wins = obj > att, att > obj                      # [T, N]
    majority = obj_wins.sum(0) > att_wins.sum(0)
    return {
        "object_rate": round(float(obj_wins.mean()), 4), "attack_rate": round(float(att_wins.mean()), 4),
        "per_template": {t: round(float(obj_wins[i].mean()), 4) for i, t in enumerate(templates)},
        "object_majority": proportion(int(majority.sum()), len(objects)),
        "n": len(objects), "templates": list(templates),
    }
