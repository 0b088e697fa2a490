"""What HF causal LMs and VLMs share: chat messages, batched generation with left padding,
batch-invariant seeded sampling, stop strings, token counts, timing, hashing and the white-box
surface (neuron sites, module lookup, target log-likelihood)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria

from safeglass.hashing import content_hash
from safeglass.targets.families._common import SiteSpec
from safeglass.types import Conversation, Generation, GenerationParams, NeuronSite, conversation_key

log = logging.getLogger("safeglass")

# names as safeglass.machine.resolve_dtype returns them (it maps the fp32 / bf16 / fp16 aliases and auto)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str, device: str = "cpu") -> torch.dtype:
    """The torch dtype of a name; ``auto`` is bfloat16 where it is native (GPU, AVX512-BF16 / AMX), else float32."""
    from safeglass.machine import resolve_dtype

    return DTYPES[resolve_dtype(name, device)]


def contiguous_lm_head(model: Any) -> None:
    """Give the output projection a contiguous input. At prefill, generate() asks for the last position's logits
    only, and LLaVA-style models pass that slice of the hidden states on without copying it; torch's matmul then
    cannot fold the batch into one matrix product and copies the whole vocabulary matrix once per row (measured:
    1.4 s of a 1.9 s prefill for 16 SafeSmol-VL prompts in bfloat16). Copying the [batch, 1, hidden] slice
    instead costs nothing and changes no output (tested)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or getattr(head, "_safeglass_contiguous", False):
        return
    head.register_forward_pre_hook(_contiguous_first_input)
    head._safeglass_contiguous = True


def _contiguous_first_input(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if args and isinstance(args[0], torch.Tensor) and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:])
    return None


# --- hashing ---------------------------------------------------------------------------------------

def file_fingerprint(path: str, full_below: int = 2 << 30) -> str:
    """sha256 of the bytes (SmolLM2's 89 MB GGUF takes ~0.1 s); above ``full_below`` only the size and
    the first and last MiB, which survives copying, unlike an mtime."""
    import hashlib

    size = os.path.getsize(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= full_below:
            while block := f.read(1 << 22):
                h.update(block)
        else:
            h.update(str(size).encode())
            h.update(f.read(1 << 20))
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def weights_fingerprint(model: torch.nn.Module, full_below: int = 20_000_000) -> str:
    """Hash of the parameters: all bytes for small models, shapes plus a strided sample above."""
    import hashlib

    h = hashlib.sha256()
    params = list(model.state_dict().items())
    total = sum(t.numel() for _, t in params)
    for name, t in params:
        t = t.detach().to("cpu")
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        flat = t.reshape(-1)
        if total > full_below and flat.numel() > 4096:
            flat = flat[:: max(1, flat.numel() // 4096)]
        h.update(flat.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


# --- chat messages ---------------------------------------------------------------------------------

def merge_system(conv: Conversation) -> list[tuple[str, str, tuple]]:
    """(role, text, images) with system turns folded into the first user turn."""
    system = "\n\n".join(t.text for t in conv if t.role == "system" and t.text)
    out: list[tuple[str, str, tuple]] = []
    merged = not system
    for t in conv:
        if t.role == "system":
            continue
        text = t.text
        if not merged and t.role == "user":
            text, merged = f"{system}\n\n{text}" if text else system, True
        out.append((t.role, text, t.images))
    if not merged:  # only system turns: the system text becomes the user's message
        out.insert(0, ("user", system, ()))
    return out


def to_messages(conv: Conversation, system_ok: bool, structured: bool) -> list[dict[str, Any]]:
    """Chat-template messages; ``structured`` gives VLM content lists with image slots first."""
    turns = [(t.role, t.text, t.images) for t in conv] if system_ok else merge_system(conv)
    msgs = []
    for role, text, images in turns:
        if structured:
            content = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
            msgs.append({"role": role, "content": content})
        else:
            if images:
                raise ValueError("this target is text-only; the conversation has images")
            msgs.append({"role": role, "content": text})
    return msgs


def template_takes_system(render: Any) -> bool:
    """Whether a chat template renders a system message (some raise, some drop it)."""
    probe = "SAFEGLASS-SYSTEM-PROBE"
    try:
        text = render([{"role": "system", "content": probe}, {"role": "user", "content": "hi"}])
    except Exception:
        return False
    return probe in text


def row_seed(seed: int, conv: Conversation) -> int:
    """A per-conversation seed, so sampled outputs do not move with batch size or position."""
    return int(content_hash({"seed": seed, "conv": conversation_key(conv)}, length=15), 16)


def chunks(items: Sequence[Any], size: int) -> Iterable[tuple[int, Sequence[Any]]]:
    for i in range(0, len(items), max(1, size)):
        yield i, items[i:i + max(1, size)]


# --- generation ------------------------------------------------------------------------------------

class RowSampler(LogitsProcessor):
    """Temperature + top-p sampling with one torch.Generator per row.

    Returned as a logits processor that leaves only the sampled token finite, so greedy decoding
    then picks it: a row's draw depends on its own seed only, not on its neighbours in the batch.
    """

    def __init__(self, temperature: float, top_p: float, seeds: Sequence[int]) -> None:
        self.temperature, self.top_p, self.seeds = temperature, top_p, list(seeds)
        self.gens: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
            cum = sorted_logits.softmax(-1).cumsum(-1)
            drop = cum - sorted_logits.softmax(-1) >= self.top_p  # keep the token crossing top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)
        probs = logits.softmax(-1)
        if self.gens is None:  # on the scores' device, so no per-step copy of the vocabulary
            self.gens = [torch.Generator(device=probs.device).manual_seed(s) for s in self.seeds]
        picks = torch.stack([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.gens)])
        return torch.full_like(scores, float("-inf")).scatter(1, picks, 0.0)


class StopOnStrings(StoppingCriteria):
    """Stops a row once its new text contains a stop string (the text is truncated afterwards)."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_len: int) -> None:
        self.tokenizer, self.stops, self.prompt_len = tokenizer, list(stops), prompt_len
        # a token is at least one character, so this many tail tokens always cover a stop string
        self.tail = max(len(s) for s in self.stops) + 4
        self.found: list[bool] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **kw: Any) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_len:]
        texts = self.tokenizer.batch_decode(new[:, -self.tail:], skip_special_tokens=True)
        done = [any(s in t for s in self.stops) for t in texts]
        self.found = [a or b for a, b in zip(self.found or [False] * len(done), done)]
        return torch.tensor(self.found, dtype=torch.bool, device=input_ids.device)


NEUTRAL_DECODING: dict[str, Any] = {
    "temperature": 1.0, "top_k": 50, "top_p": 1.0, "typical_p": 1.0, "min_length": 0,
    "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "length_penalty": 1.0,
}


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for v in (gen_eos, tokenizer.eos_token_id):
        if v is None:
            continue
        ids.extend(v if isinstance(v, list | tuple) else [v])
    return sorted(set(ids))


def run_generate(model: Any, tokenizer: Any, inputs: dict[str, torch.Tensor], convs: Sequence[Conversation],
                 params: GenerationParams) -> list[Generation]:
    """One padded batch through ``model.generate``; returns Generations without timing."""
    from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    eos = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    # Outputs depend on GenerationParams only: generate() fills unset fields from the checkpoint's
    # generation_config (Qwen ships repetition_penalty 1.05), so the neutral values are pinned here.
    gc = GenerationConfig(max_new_tokens=params.max_new_tokens, do_sample=False, num_beams=1,
                          eos_token_id=eos, pad_token_id=pad, **NEUTRAL_DECODING)
    prompt_len = inputs["input_ids"].shape[1]
    procs = LogitsProcessorList()
    if not params.greedy:
        procs.append(RowSampler(params.temperature, params.top_p, [row_seed(params.seed, c) for c in convs]))
    stops = StoppingCriteriaList()
    if params.stop:
        stops.append(StopOnStrings(tokenizer, params.stop, prompt_len))
    with torch.no_grad():
        out = model.generate(**inputs, generation_config=gc, logits_processor=procs, stopping_criteria=stops)
    ends = set(eos) | {pad}
    results = []
    for i in range(out.shape[0]):
        new = out[i, prompt_len:].tolist()
        n = next((k for k, tok in enumerate(new) if tok in ends), len(new))
        text = tokenizer.decode(new[:n], skip_special_tokens=True)
        finish = "stop" if n < len(new) else "length"
        cut = [text.find(s) for s in params.stop if s in text]
        if cut:
            text, finish = text[:min(cut)], "stop"
        results.append(Generation(text=text, prompt_tokens=int(inputs["attention_mask"][i].sum()),
                                  completion_tokens=n, finish_reason=finish))
    return results


def timed_batches(convs: Sequence[Conversation], batch_size: int, run: Any) -> list[Generation]:
    """Runs ``run(chunk) -> list[Generation]`` per chunk and splits each chunk's wall time evenly."""
    results: list[Generation] = []
    for _, chunk in chunks(convs, batch_size):
        t0 = time.perf_counter()
        gens = run(chunk)
        dt = (time.perf_counter() - t0) / max(1, len(chunk))
        for g in gens:
            g.seconds = dt
        results.extend(gens)
    return results


# --- white-box surface -----------------------------------------------------------------------------

def resolve_module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as e:
        raise KeyError(f"module path {path!r} does not exist in {type(model).__name__}") from e


def sites_from_specs(model: torch.nn.Module, specs: Sequence[SiteSpec],
                     components: Sequence[str]) -> list[NeuronSite]:
    unknown = set(components) - {s.component for s in specs}
    if unknown:
        raise ValueError(f"unknown component(s) {sorted(unknown)}; this model has "
                         f"{sorted({s.component for s in specs})}")
    sites = []
    for spec in specs:
        if spec.component not in components:
            continue
        if spec.container is None:
            paths = [(0, spec.module)]
        else:
            n = len(resolve_module(model, spec.container))
            paths = [(i, f"{spec.container}.{i}.{spec.module}") for i in range(n)]
        for layer, path in paths:
            mod = resolve_module(model, path)
            width = mod.in_features if spec.hook == "pre" else mod.out_features
            name = f"{spec.prefix}.{layer}" if spec.container is not None else spec.prefix
            sites.append(NeuronSite(name=name, module_path=path, hook=spec.hook, width=int(width),
                                    component=spec.component, layer=layer))
    return sites


def target_logprob(model: Any, inputs: dict[str, Any], prompt_len: int) -> torch.Tensor:
    """Sum log p(target) where ``inputs['input_ids']`` is prompt + target: labels -100 over the prompt."""
    ids = inputs["input_ids"]
    labels = ids.clone()
    labels[:, :prompt_len] = -100
    logits = model(**inputs).logits[:, :-1].float()
    tgt = labels[:, 1:]
    logp = torch.log_softmax(logits, dim=-1)
    mask = tgt != -100
    picked = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum()


class WhiteBox:
    """The white-box surface both HF targets share; subclasses set ``model`` and ``_site_specs``."""

    model: Any
    _site_specs: tuple[SiteSpec, ...]

    def _config_base(self) -> dict[str, Any]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """What identifies the model and changes outputs (modifiers applied after loading are the runner's to
        record)."""
        return self._config_base()

    def module(self, path: str) -> torch.nn.Module:
        """The submodule at a dotted path ("model.layers.3.mlp.down_proj"); KeyError naming it if absent."""
        return resolve_module(self.model, path)

    def neuron_sites(self, components: Sequence[str] = ("language_model",)) -> list[NeuronSite]:
        """Neuron groups from the family's declarative map; LM MLP neurons are down_proj's input."""
        if isinstance(components, str):
            components = (components,)
        return sites_from_specs(self.model, self._site_specs, components)
