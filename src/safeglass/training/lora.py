"""LoRA adapters with peft: the config, the trainable tensors, float16 rounding and saving as peft reads it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safeglass.training.weights import save_safetensors

ADAPTER_FILE = "adapter_model.safetensors"  # the names peft's from_pretrained looks for
ADAPTER_CONFIG_FILE = "adapter_config.json"


def lora_config(r: int, alpha: int, dropout: float, target_modules: Sequence[str],
                task_type: str = "CAUSAL_LM") -> Any:
    """A peft LoraConfig without bias training, so only the adapter's A and B matrices change."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                      bias="none", task_type=task_type)


def lora_parameters(model: Any) -> list[Any]:
    """The adapter's tensors (peft names them lora_A / lora_B), in the model's parameter order."""
    return [p for n, p in model.named_parameters() if "lora_" in n]


def round_adapter(model: Any) -> None:
    """Round the adapter to float16 in place, so what is evaluated after training is exactly what is saved."""
    import torch

    with torch.no_grad():
        for p in lora_parameters(model):
            p.copy_(p.to(torch.float16).to(p.dtype))


def save_adapter(model: Any, out_dir: Path, base_model_name: str) -> str:
    """adapter_model.safetensors (float16) and adapter_config.json, as peft reads them; returns the sha256.

    `base_model_name` goes into the config's base_model_name_or_path: where the base comes from, since it is
    not saved beside the adapter."""
    import torch
    from peft import get_peft_model_state_dict

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in get_peft_model_state_dict(model).items()}
    sha = save_safetensors(state, out_dir / ADAPTER_FILE)
    conf = model.peft_config["default"].to_dict()
    conf = {k: (sorted(v) if isinstance(v, set) else v) for k, v in conf.items()}  # sets print in random order
    conf["peft_type"] = str(getattr(conf["peft_type"], "value", conf["peft_type"]))
    conf["task_type"] = str(getattr(conf["task_type"], "value", conf["task_type"]))
    conf["base_model_name_or_path"] = base_model_name
    (out_dir / ADAPTER_CONFIG_FILE).write_text(json.dumps(conf, indent=2, sort_keys=True, default=str) + "\n",
                                               encoding="utf-8")
    return sha

