"""Hugging Face vision-language models (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL, LLaVA) as
white-box Targets: batched multi-image generation, neuron sites, and differentiable preprocessing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from safeglass.hashing import content_hash
from safeglass.machine import resolve_dtype
from safeglass.targets.families import Family, family_for_model_type, get_family
from safeglass.targets.hf_common import (
    WhiteBox,
    contiguous_lm_head,
    file_fingerprint,
    merge_system,
    run_generate,
    target_logprob,
    template_takes_system,
    timed_batches,
    to_messages,
    torch_dtype,
)
from safeglass.types import Conversation, Generation, GenerationParams, ImageRef

# per-token tensors a processor returns besides input_ids, and what a target token gets in them
_PER_TOKEN_FILL = {"attention_mask": 1, "mm_token_type_ids": 0, "token_type_ids": 0}


def _pil_rgb(image: Any) -> Any:
    img = image.pil() if isinstance(image, ImageRef) else image
    return img if img.mode == "RGB" else img.convert("RGB")


class HFVisionLM(WhiteBox):
    """A VLM behind the Target protocol. Images come from each turn's ImageRefs, shown before the
    turn's text; text-only conversations share batches with image ones.

    Args:
        model: hub id or local folder of a safetensors VLM.
        family: qwen2-vl, qwen2.5-vl, qwen3-vl, internvl or llava (unset: detected from the model's model_type).
        dtype: auto (bfloat16 on a GPU or a CPU with native bfloat16, float32 elsewhere), float32, bfloat16 or
            float16; results record and key the dtype auto chose.
        device: torch device to run on: cpu, cuda, cuda:N or mps.
        batch_size: conversations generated together in one batch.
        trust_remote_code: let transformers run the Python code shipped with the model repo.
        revision: hub branch, tag or commit to load.
        name: the target's name in results and reports (a model loaded by id or folder, left unnamed, takes the
            last part of ``model``).
        chat_template: a Jinja chat template replacing the processor's (required if the processor has none).
        system_prompt_supported: false folds system turns into the first user turn; true keeps them where the
            template renders a system message (and folds them where it does not).
    """

    def __init__(self, model: str, family: str | None = None, dtype: str = "auto", device: str = "cpu",
                 batch_size: int = 8, trust_remote_code: bool = False, revision: str | None = None,
                 name: str | None = None, chat_template: str | None = None,
                 system_prompt_supported: bool = True) -> None:
        from transformers import AutoConfig, AutoModelForImageTextToText

        kw: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        hf_cfg = AutoConfig.from_pretrained(model, **kw)
        fam = get_family(family) if family else family_for_model_type(hf_cfg.model_type)
        dtype = resolve_dtype(dtype, device)  # results record the dtype that made them, never "auto"
        m = AutoModelForImageTextToText.from_pretrained(model, dtype=torch_dtype(dtype), use_safetensors=True, **kw)
        processor = fam.load_processor(model, **kw)
        self._setup(m.to(device).eval(), processor, fam, name or Path(model).name, batch_size, chat_template,
                    system_prompt_supported)
        self._source = {"model": model, "revision": revision, "dtype": dtype,
                        "commit": getattr(m.config, "_commit_hash", None)}
        self._config: dict[str, Any] | None = None

    @classmethod
    def from_model(cls, model: Any, processor: Any, family: str | None = None, name: str = "hf-vlm",
                   config: dict[str, Any] | None = None, batch_size: int = 8, chat_template: str | None = None,
                   system_prompt_supported: bool = True) -> HFVisionLM:
        """Wrap an already-built model and processor; ``config`` identifies it in result keys.

        Args:
            model: a built transformers image-text-to-text model.
            processor: its processor (tokenizer, image processor and chat template).
            family: qwen2-vl, qwen2.5-vl, qwen3-vl, internvl or llava (unset: detected from the model's
                model_type).
            name: the target's name in results and reports.
            config: what identifies the model in result keys (family, chat template and system flag are added).
            batch_size: conversations generated together in one batch.
            chat_template: a Jinja chat template replacing the processor's (required if the processor has none).
            system_prompt_supported: false folds system turns into the first user turn; true keeps them where
                the template renders a system message (and folds them where it does not).
        """
        fam = get_family(family) if family else family_for_model_type(model.config.model_type)
        self = cls.__new__(cls)
        self._setup(model.eval(), processor, fam, name, batch_size, chat_template, system_prompt_supported)
        self._source = None
        self._config = {"target": "hf-vlm", "family": fam.name, **(config or {}),
                        "chat_template": content_hash(self.processor.chat_template or ""),
                        "system_prompt_supported": self.system_prompt_supported}
        return self

    def _setup(self, model: Any, processor: Any, family: Family, name: str, batch_size: int,
               chat_template: str | None, system_prompt_supported: bool) -> None:
        self.model, self.processor, self.family, self.name = model, processor, family, name
        self.tokenizer = processor.tokenizer
        self.batch_size = batch_size
        self._site_specs = family.sites
        self.tokenizer.padding_side = "left"  # generation appends on the right, so pads go left
        contiguous_lm_head(model)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if chat_template is not None:
            processor.chat_template = chat_template
        if not getattr(processor, "chat_template", None):
            raise ValueError(f"{name}: the processor has no chat template; pass chat_template=")
        self.system_prompt_supported = system_prompt_supported and template_takes_system(self._render)

    def _config_base(self) -> dict[str, Any]:
        """What identifies the model and changes outputs; batch size and device are left out."""
        if self._config is None:
            src = self._source
            cfg: dict[str, Any] = {"target": "hf-vlm", "family": self.family.name, "dtype": src["dtype"],
                                   "chat_template": content_hash(self.processor.chat_template or ""),
                                   "system_prompt_supported": self.system_prompt_supported}
            if os.path.exists(src["model"]):
                cfg["model"] = Path(src["model"]).name
                cfg["weights"] = {p.name: file_fingerprint(str(p))
                                  for p in sorted(Path(src["model"]).glob("*.safetensors"))}
            else:
                cfg.update(model=src["model"], revision=src["revision"], commit=src["commit"])
            self._config = cfg
        return dict(self._config)

    # --- prompts -----------------------------------------------------------------------------------

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def prompt_text(self, conv: Conversation) -> str:
        """The prompt string before the processor expands each image slot into its tokens."""
        return self._render(to_messages(conv, self.system_prompt_supported, structured=True))

    @staticmethod
    def _images(conv: Conversation) -> list[Any]:
        # same order as the template's image slots: turn by turn, images before text
        return [_pil_rgb(img) for _, _, imgs in merge_system(conv) for img in imgs]

    def _process(self, texts: list[str], images: list[Any]) -> dict[str, torch.Tensor]:
        enc = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True,
                             add_special_tokens=False)  # the template already wrote the specials
        out = {k: v.to(self.model.device) for k, v in enc.items() if isinstance(v, torch.Tensor)}
        if "pixel_values" in out:
            out["pixel_values"] = out["pixel_values"].to(self.model.dtype)
        return out

    def _encode(self, convs: Sequence[Conversation]) -> dict[str, torch.Tensor]:
        return self._process([self.prompt_text(c) for c in convs], [i for c in convs for i in self._images(c)])

    # --- Target protocol ---------------------------------------------------------------------------

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[Generation]:
        return timed_batches(
            conversations, self.batch_size,
            lambda chunk: run_generate(self.model, self.tokenizer, self._encode(chunk), chunk, params))

    # --- differentiable images ---------------------------------------------------------------------

    def kept_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) the processor would resize an image of this size to."""
        return tuple(self.family.kept_size(self.processor, height, width))

    def prepare_images(self, images: Sequence[Any], size: tuple[int, int] | None = None) -> torch.Tensor:
        """[N,3,H,W] in [0,1], resized in PIL (as the processor would) to a size it then keeps.

        ``size`` (height, width) defaults to the kept size of the first image (LLaVA: the processor's
        resize and centre crop). InternVL gets one tile, without the processor's dynamic tiling.
        """
        import numpy as np

        pils = [_pil_rgb(i) for i in images]
        if size is None and self.family.prepare is not None:
            return self.family.prepare(self.processor, pils).to(self.model.device)
        if size is None:
            size = self.kept_size(pils[0].height, pils[0].width)
        resample = int(getattr(self.processor.image_processor, "resample", 3) or 3)
        arrays = []
        for p in pils:
            if (p.height, p.width) != tuple(size):
                p = p.resize((size[1], size[0]), resample=resample)
            arrays.append(np.asarray(p, dtype=np.uint8))
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
        return x.to(self.model.device)

    def preprocess_differentiable(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The processor's image outputs (``pixel_values``, ``image_grid_thw`` for Qwen) computed in
        torch from [N,3,H,W] in [0,1] at a kept size, so gradients reach the pixels."""
        return self.family.preprocess(self.processor, images)

    # --- white box ---------------------------------------------------------------------------------

    def loglikelihood(self, conversation: Conversation, target_text: str,
                      pixel_values: torch.Tensor | dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Sum log-prob of ``target_text`` as the reply. ``pixel_values`` may be None (the
        conversation's images through the processor), a [N,3,H,W] image tensor in [0,1] (one per image
        slot, differentiable), or a dict from ``preprocess_differentiable``."""
        images = self._images(conversation)
        vision: dict[str, torch.Tensor] | None = None
        if isinstance(pixel_values, torch.Tensor):
            if pixel_values.shape[0] != len(images):
                raise ValueError(f"{pixel_values.shape[0]} images given for {len(images)} image slot(s)")
            vision = self.preprocess_differentiable(pixel_values)
            # stand-ins of the same size, so the processor expands each slot to the right token count
            images = [_tensor_to_pil(t) for t in pixel_values.detach()]
        elif isinstance(pixel_values, dict):
            vision = pixel_values
        enc = self._process([self.prompt_text(conversation)], images)
        prompt_len = enc["input_ids"].shape[1]
        target = torch.tensor([self.tokenizer(target_text, add_special_tokens=False)["input_ids"]],
                              device=self.model.device)
        enc["input_ids"] = torch.cat([enc["input_ids"], target], dim=1)
        for key, fill in _PER_TOKEN_FILL.items():
            if key in enc:
                enc[key] = torch.cat([enc[key], torch.full_like(target, fill)], dim=1)
        if vision is not None:
            enc.update({k: (v.to(self.model.dtype) if k == "pixel_values" else v) for k, v in vision.items()})
        return target_logprob(self.model, enc, prompt_len)


def _tensor_to_pil(t: torch.Tensor) -> Any:
    from PIL import Image

    arr = (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)
