"""Pooled neuron activations of a white-box target over a chosen token span.

Each item is a conversation and an optional response; the response is teacher-forced after the
chat-templated prompt, tokenised apart from it exactly as ``loglikelihood`` does. One forward pass per
batch records, for every neuron site, the max or mean over the item's span of the site's input
(the input of ``down_proj`` for LM MLP neurons), with padding excluded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from safeglass.types import Conversation, Sample

SPANS = ("response", "prompt", "image", "all")
POOLINGS = ("max", "mean")
COMPONENTS = ("language_model", "vision_tower", "projector")

Item = tuple[Conversation, str | None] | Sample

# per-token tensors a processor returns, and what a response token / a pad gets in them (None: its id)
_RESPONSE_FILL = {"input_ids": None, "attention_mask": 1, "mm_token_type_ids": 0, "token_type_ids": 0}
_PAD_FILL = {"input_ids": None, "attention_mask": 0, "mm_token_type_ids": 0, "token_type_ids": 0}


@dataclass(frozen=True)
class SiteSlice:
    """Where a neuron site's columns lie in an activation / expertise vector."""

    name: str
    module_path: str
    offset: int
    width: int
    layer: int
    component: str
    hook: str = "pre"

    @property
    def stop(self) -> int:
        return self.offset + self.width

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SiteSlice:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def layout_of(sites: Sequence[Any]) -> tuple[SiteSlice, ...]:
    """Consecutive column ranges for NeuronSites, in the order given."""
    out, offset = [], 0
    for s in sites:
        out.append(SiteSlice(s.name, s.module_path, offset, int(s.width), int(s.layer), s.component, s.hook))
        offset += int(s.width)
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate site names in {names}")
    return tuple(out)


def check_layout(layout: Sequence[SiteSlice], n_columns: int) -> None:
    offset = 0
    for s in layout:
        if s.offset != offset or s.width <= 0:
            raise ValueError(f"site {s.name}: columns must follow each other (offset {s.offset}, expected {offset})")
        offset = s.stop
    if offset != n_columns:
        raise ValueError(f"the layout covers {offset} columns but there are {n_columns}")


@dataclass
class Activations:
    """Pooled activations: ``values[i, j]`` is neuron j's pooled activation on item i (float32)."""

    values: np.ndarray
    layout: tuple[SiteSlice, ...]
    span: str
    pooling: str
    n_tokens: np.ndarray  # per item, how many tokens the LM span had
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_layout(self.layout, self.values.shape[1])

    @property
    def n_items(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.values.shape[1])

    def site(self, name: str) -> np.ndarray:
        """The [n_items, width] view of one site's columns."""
        for s in self.layout:
            if s.name == name:
                return self.values[:, s.offset:s.stop]
        raise KeyError(f"no site {name!r}; sites: {', '.join(s.name for s in self.layout)}")


def as_item(x: Any, index: int = 0) -> tuple[Conversation, str | None]:
    """(conversation, response) from a pair or a Sample (its response: ``metadata['response']``)."""
    if isinstance(x, Sample):
        resp = x.metadata.get("response")
        return x.turns, (str(resp) if resp is not None else None)
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], tuple) and (x[1] is None or isinstance(x[1], str)):
        return x[0], x[1]
    raise TypeError(f"item {index}: expected (conversation, response or None) or a Sample, got {type(x).__name__}")


# --- encoding --------------------------------------------------------------------------------------

def _is_vlm(target: Any) -> bool:
    return hasattr(target, "processor")


def _image_token_id(target: Any) -> int:
    cfg = target.model.config
    for name in ("image_token_id", "image_token_index"):
        value = getattr(cfg, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"{target.name}: cannot find the image token id in the model config")


def _encode_one(target: Any, conv: Conversation, response: str | None) -> tuple[dict[str, torch.Tensor], int]:
    """(encoding with batch dim 1, prompt length) of prompt + response, as loglikelihood builds it."""
    if _is_vlm(target):
        enc = target._process([target.prompt_text(conv)], target._images(conv))
    else:
        ids = target.tokenizer(target.prompt_text(conv), add_special_tokens=False)["input_ids"]
        ids_t = torch.tensor([ids], device=target.model.device)
        enc = {"input_ids": ids_t, "attention_mask": torch.ones_like(ids_t)}
    prompt_len = int(enc["input_ids"].shape[1])
    if response:
        resp = torch.tensor([target.tokenizer(response, add_special_tokens=False)["input_ids"]],
                            device=enc["input_ids"].device)
        for key, fill in _RESPONSE_FILL.items():
            if key in enc:
                enc[key] = torch.cat([enc[key], resp if fill is None else torch.full_like(resp, fill)], dim=1)
    return enc, prompt_len


def _encoded_length(target: Any, item: tuple[Conversation, str | None], span: str) -> int:
    conv, response = item
    enc, _ = _encode_one(target, conv, response if span in ("response", "all") else None)
    return int(enc["input_ids"].shape[1])


def _span_mask(span: str, ids: torch.Tensor, prompt_len: int, image_id: int | None) -> torch.Tensor:
    n = ids.shape[0]
    pos = torch.arange(n, device=ids.device)
    if span == "all":
        return torch.ones(n, dtype=torch.bool, device=ids.device)
    if span == "prompt":
        return pos < prompt_len
    if span == "response":
        return pos >= prompt_len
    return (ids == image_id) & (pos < prompt_len)


@dataclass
class _Batch:
    inputs: dict[str, torch.Tensor]
    mask: torch.Tensor            # [B, T] bool: the span, padding excluded
    units: list[int]              # per item: rows of pixel_values (patches or tiles); 0 without images


def _collate(target: Any, items: Sequence[tuple[Conversation, str | None]], span: str, indices: Sequence[int],
             pad_id: int, image_id: int | None, need_units: bool, mrope: bool) -> _Batch:
    encs, masks, units = [], [], []
    for k, (conv, response) in enumerate(items):
        enc, prompt_len = _encode_one(target, conv, response if span in ("response", "all") else None)
        mask = _span_mask(span, enc["input_ids"][0], prompt_len, image_id)
        if not bool(mask.any()):
            what = {"response": "an empty or missing response", "image": "no image tokens"}.get(span, "no tokens")
            raise ValueError(f"item {indices[k]}: span {span!r} selects no tokens ({what})")
        n_units = int(enc["pixel_values"].shape[0]) if "pixel_values" in enc else 0
        if need_units and n_units == 0:
            raise ValueError(f"item {indices[k]}: vision-tower / projector sites need an image in every item")
        encs.append(enc)
        masks.append(mask)
        units.append(n_units)
    width = max(int(e["input_ids"].shape[1]) for e in encs)
    inputs: dict[str, torch.Tensor] = {}
    keys = [k for k in encs[0] if k in _PAD_FILL]
    for key in keys:
        fill = pad_id if key == "input_ids" else _PAD_FILL[key]
        rows = []
        for e in encs:
            v = e[key]
            # left padding, as the targets generate with
            rows.append(torch.cat([torch.full((1, width - v.shape[1]), fill, dtype=v.dtype, device=v.device), v], 1))
        inputs[key] = torch.cat(rows, 0)
    for key in {k for e in encs for k in e if k not in _PAD_FILL}:
        parts = [e[key] for e in encs if key in e]
        inputs[key] = torch.cat(parts, 0)
    mask = torch.stack([torch.cat([torch.zeros(width - m.shape[0], dtype=torch.bool, device=m.device), m])
                        for m in masks])
    if not mrope:
        # explicit positions from the mask: a padded row then sees the same positions as alone
        inputs["position_ids"] = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    return _Batch(inputs, mask, units)


# --- hooks -----------------------------------------------------------------------------------------

class _Recorder:
    """Forward pre-hooks that pool each site's input into a [B, total] buffer for the current batch."""

    def __init__(self, layout: Sequence[SiteSlice], pooling: str) -> None:
        self.layout, self.pooling = layout, pooling
        self.batch: _Batch | None = None
        self.buffer: torch.Tensor | None = None
        self.seen: set[str] = set()

    def start(self, batch: _Batch) -> None:
        self.batch = batch
        self.buffer = torch.full((batch.mask.shape[0], self.layout[-1].stop), float("nan"), device=batch.mask.device)
        self.seen = set()

    def hook(self, site: SiteSlice) -> Any:
        def pre_hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            if site.name in self.seen:
                raise RuntimeError(f"site {site.name} ran twice in one forward pass; cannot pool it")
            self.seen.add(site.name)
            x = args[0].detach().float()
            if x.shape[-1] != site.width:
                raise RuntimeError(f"site {site.name}: input width {x.shape[-1]}, expected {site.width}")
            if site.component == "language_model":
                pooled = self._pool_tokens(x, self.batch.mask)
            else:
                pooled = self._pool_vision(x, site)
            self.buffer[:, site.offset:site.stop] = pooled

        return pre_hook

    def _pool_tokens(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.shape[:2] != mask.shape:
            raise RuntimeError(f"LM site saw shape {tuple(x.shape)}, but the batch is {tuple(mask.shape)} tokens")
        m = mask.unsqueeze(-1)
        if self.pooling == "max":
            return x.masked_fill(~m, float("-inf")).amax(1)
        return (x * m).sum(1) / m.sum(1).clamp(min=1)

    def _pool_vision(self, x: torch.Tensor, site: SiteSlice) -> torch.Tensor:
        units = self.batch.units
        total = sum(units)
        if x.ndim == 3 and x.shape[0] == total:  # [tiles or images, tokens, width]
            counts, per_unit, rows = units, x.shape[1], x.reshape(-1, x.shape[-1])
        elif x.ndim == 2:  # Qwen: patch rows of all images back to back (merged 2x2 in the projector)
            if any((u * x.shape[0]) % total for u in units):
                raise RuntimeError(f"site {site.name}: {x.shape[0]} rows do not split over images of {units} patches")
            counts, per_unit, rows = [u * x.shape[0] // total for u in units], 1, x
        else:
            raise RuntimeError(f"site {site.name}: cannot split shape {tuple(x.shape)} over items with {units} units")
        out, start = [], 0
        for c in counts:
            part = rows[start:start + c * per_unit]
            start += c * per_unit
            out.append(part.amax(0) if self.pooling == "max" else part.mean(0))
        return torch.stack(out)


def record(target: Any, items: Iterable[Item], *, span: str = "response", pooling: str = "max",
           components: Sequence[str] = ("language_model",), batch_size: int = 8,
           progress: bool = True) -> Activations:
    """Pooled activations of every neuron the target exposes in ``components``.

    ``span``: "response" (teacher-forced response tokens), "prompt" (the templated prompt), "image"
    (the image placeholder tokens of a VLM) or "all"; it applies to language-model sites, while vision
    tower and projector sites are pooled over all of an item's image tokens.
    """
    from tqdm.auto import tqdm

    if span not in SPANS:
        raise ValueError(f"span must be one of {SPANS}, not {span!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    if isinstance(components, str):
        components = (components,)
    if not hasattr(target, "neuron_sites") or not hasattr(target, "model"):
        raise TypeError(f"recording needs a white-box target (HFCausalLM, HFVisionLM), not {type(target).__name__}")
    pairs = [as_item(x, i) for i, x in enumerate(items)]
    if not pairs:
        raise ValueError("no items to record")
    vlm = _is_vlm(target)
    if span == "image" and not vlm:
        raise ValueError(f"span 'image' needs a vision-language target; {target.name} is text-only")
    layout = layout_of(target.neuron_sites(tuple(components)))
    if not layout:
        raise ValueError(f"{target.name} exposes no neuron sites in {list(components)}")
    image_id = _image_token_id(target) if span == "image" else None
    tok = target.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    base = getattr(target.model, "model", target.model)  # skips the LM head: logits are not needed
    mrope = hasattr(base, "get_rope_index")  # Qwen-VL derives its 3-D positions from the mask itself
    need_units = any(s.component != "language_model" for s in layout)
    values = np.empty((len(pairs), layout[-1].stop), dtype=np.float32)
    n_tokens = np.zeros(len(pairs), dtype=np.int64)
    rec = _Recorder(layout, pooling)
    handles = []
    try:
        for s in layout:
            handles.append(target.module(s.module_path).register_forward_pre_hook(rec.hook(s)))
        with tqdm(total=len(pairs), desc=f"record {target.name}", unit="item", disable=not progress,
                  dynamic_ncols=True) as bar:
            # Batches of items of similar length: padding was a quarter of the tokens on MM-TOXIC-QA in dataset
            # order. Each row's values go back to its item's place, so the order of the output does not change.
            order = sorted(range(len(pairs)), key=lambda i: (_encoded_length(target, pairs[i], span), i))
            for start in range(0, len(order), max(1, batch_size)):
                idx = order[start:start + max(1, batch_size)]
                batch = _collate(target, [pairs[i] for i in idx], span, idx, pad_id, image_id, need_units, mrope)
                rec.start(batch)
                with torch.no_grad():
                    base(**batch.inputs, use_cache=False)
                missing = [s.name for s in layout if s.name not in rec.seen]
                if missing:
                    raise RuntimeError(f"site(s) {missing} did not run in the forward pass")
                values[idx] = rec.buffer.cpu().numpy()
                n_tokens[idx] = batch.mask.sum(1).cpu().numpy()
                bar.update(len(idx))
    finally:
        for h in handles:
            h.remove()
    meta = {"target": _safe_config(target), "target_name": target.name, "components": list(components),
            "batch_size": batch_size}
    return Activations(values, layout, span, pooling, n_tokens, meta)


def _safe_config(target: Any) -> dict[str, Any]:
    try:
        return target.config()
    except Exception as exc:  # provenance must not lose a recording
        return {"error": f"config() failed: {exc}"}
