"""Tiny random models of every supported family (2 layers, width 64; vision depth 2, width 32),
built offline in a few hundredths of a second: for tests and for other modules' tests.

The tokenizer is a byte-level BPE over the 256 GPT-2 byte symbols with no merges (round-trips any
text) plus the family's special tokens; chat templates are short ChatML-style Jinja strings.
"""

from __future__ import annotations

from typing import Any

import torch

from safeglass.options import forwards_options

FAMILY_NAMES = ("llama", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "internvl", "llava")

_CHATML = ["<|im_start|>", "<|im_end|>"]
_QWEN_SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
_INTERNVL_EXTRA = {"start_image_token": "<img>", "end_image_token": "</img>",
                   "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
_IMAGE_SLOT = {"qwen2-vl": "<|vision_start|><|image_pad|><|vision_end|>",
               "qwen2.5-vl": "<|vision_start|><|image_pad|><|vision_end|>",
               "qwen3-vl": "<|vision_start|><|image_pad|><|vision_end|>",
               "internvl": "<IMG_CONTEXT>\\n", "llava": "<image>\\n", "llama": ""}

TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024)
# head_dim 16: the three M-RoPE sections must sum to head_dim / 2
MROPE = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}


def chat_template(image_slot: str = "") -> str:
    """A ChatML template that also takes VLM content lists; ``image_slot`` is written per image."""
    return (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}{{ '" + image_slot + "' }}"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
        "{{ '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


def byte_tokenizer(specials: list[str], eos: str, pad: str, extra: dict[str, str] | None = None,
                   template: str | None = None) -> Any:
    """Byte-level BPE without merges; specials get ids 256, 257, ... in the order given."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    b2u = bytes_to_unicode()
    tk = Tokenizer(models.BPE(vocab={b2u[b]: b for b in range(256)}, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    names = list(dict.fromkeys([*specials, eos, pad, *(extra or {}).values()]))
    # added on the backend so ids are fixed; extra_special_tokens names them for processors
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in names])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token=eos, pad_token=pad,
                                  extra_special_tokens=dict(extra or {}))
    tok.chat_template = template
    return tok


def _tokenizer(family: str) -> Any:
    template = chat_template(_IMAGE_SLOT[family])
    if family == "llama":
        return byte_tokenizer(_CHATML, "<|im_end|>", "<|pad|>", template=template)
    if family.startswith("qwen"):
        return byte_tokenizer([*_CHATML, *_QWEN_SPECIALS], "<|im_end|>", "<|endoftext|>", template=template)
    if family == "internvl":
        return byte_tokenizer(_CHATML, "<|im_end|>", "<|endoftext|>", extra=_INTERNVL_EXTRA, template=template)
    if family == "llava":
        return byte_tokenizer([*_CHATML, "<image>"], "<|im_end|>", "<pad>", template=template)
    raise KeyError(f"unknown tiny family {family!r}; known: {', '.join(FAMILY_NAMES)}")


def _text(tok: Any, **extra: Any) -> dict[str, Any]:
    return {**TEXT, "vocab_size": len(tok), "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
            "bos_token_id": None, "tie_word_embeddings": False, **extra}


def _processor_and_config(family: str, tok: Any) -> tuple[Any, Any]:
    from safeglass.targets.families import get_family

    ids = tok.convert_tokens_to_ids
    template = tok.chat_template
    if family.startswith("qwen"):
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        p = 16 if family == "qwen3-vl" else 14
        f = 2 * p
        ip_kw: dict[str, Any] = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3} if family == "qwen3-vl" else {}
        ip = Qwen2VLImageProcessorPil(size={"shortest_edge": f * f * 4, "longest_edge": f * f * 16},
                                      patch_size=p, merge_size=2, temporal_patch_size=2, **ip_kw)
        token_ids = dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                         vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
        text = _text(tok, rope_parameters=dict(MROPE))
        if family == "qwen2-vl":
            from transformers import Qwen2VLConfig as Cfg

            vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=p)
        elif family == "qwen2.5-vl":
            from transformers import Qwen2_5_VLConfig as Cfg

            vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                          fullatt_block_indexes=[1], window_size=56, patch_size=p)
        else:
            from transformers import Qwen3VLConfig as Cfg

            text = _text(tok, head_dim=16, rope_parameters={**MROPE, "mrope_interleaved": True})
            vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                          num_position_embeddings=64, deepstack_visual_indexes=[1], patch_size=p)
        cfg = Cfg(text_config=text, vision_config=vision, **token_ids)
        proc = get_family(family).build_processor(ip, tok, chat_template=template)
        return proc, cfg
    if family == "internvl":
        from transformers import InternVLConfig
        from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

        # 56 px tiles, 14 px patches, pixel-shuffle 0.5: 4 tokens a tile
        ip = GotOcr2ImageProcessorPil(size={"height": 56, "width": 56}, crop_to_patches=True, min_patches=1,
                                      max_patches=4)
        cfg = InternVLConfig(
            vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                               image_size=56, patch_size=14),
            text_config=dict(model_type="qwen2", **_text(tok)),
            image_token_id=tok.context_image_token_id, image_seq_length=4, tie_word_embeddings=False)
        proc = get_family(family).build_processor(ip, tok, chat_template=template, image_seq_length=4)
        return proc, cfg
    if family == "llava":
        from transformers import CLIPImageProcessorPil, LlavaConfig

        ip = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
        cfg = LlavaConfig(
            vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14,
                               projection_dim=32),
            text_config=dict(model_type="llama", **_text(tok)),
            image_token_index=ids("<image>"), image_seq_length=4, vision_feature_layer=-1)
        proc = get_family(family).build_processor(ip, tok, chat_template=template, patch_size=14,
                                                  vision_feature_select_strategy="default",
                                                  num_additional_image_tokens=1)
        return proc, cfg
    raise KeyError(f"unknown tiny family {family!r}; known: {', '.join(FAMILY_NAMES)}")


def tiny_model_and_processor(family: str = "llama", seed: int = 0) -> tuple[Any, Any]:
    """(model, processor) for a VLM family, or (model, tokenizer) for "llama"; random weights fixed by
    ``seed``, without touching the global RNG."""
    tok = _tokenizer(family)
    if family == "llama":
        from transformers import AutoModelForCausalLM, LlamaConfig

        cfg, cls, proc = LlamaConfig(**_text(tok)), AutoModelForCausalLM, tok
    else:
        from transformers import AutoModelForImageTextToText

        proc, cfg = _processor_and_config(family, tok)
        cls = AutoModelForImageTextToText
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls.from_config(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model.eval(), proc


@forwards_options("safeglass.targets.hf_lm:HFCausalLM.from_model", "safeglass.targets.hf_vlm:HFVisionLM.from_model",
                  exclude=("model", "tokenizer", "processor", "family", "config"),
                  docs_from=("safeglass.targets.hf_lm:HFCausalLM",))
def tiny_target(family: str = "llama", seed: int = 0, dtype: str = "float32", **kw: Any) -> Any:
    """A tiny random HFCausalLM ("llama") or HFVisionLM (every VLM family) for tests.

    Args:
        family: llama (text only), qwen2-vl, qwen2.5-vl, qwen3-vl, internvl or llava.
        seed: seed of the random weights: the same seed gives the same model.
        name: the target's name in results and reports (default: tiny-<family>).
    """
    from safeglass.targets.hf_common import torch_dtype, weights_fingerprint

    model, proc = tiny_model_and_processor(family, seed)
    config = {"tiny": family, "seed": seed, "weights": weights_fingerprint(model)}
    from safeglass.machine import resolve_dtype

    dtype = resolve_dtype(dtype)
    if dtype != "float32":  # float32 keeps the keys of runs made before dtype existed
        model = model.to(torch_dtype(dtype))
        config["dtype"] = dtype
    name = kw.pop("name", f"tiny-{family}")
    if family == "llama":
        from safeglass.targets.hf_lm import HFCausalLM

        return HFCausalLM.from_model(model, proc, name=name, config=config, **kw)
    from safeglass.targets.hf_vlm import HFVisionLM

    return HFVisionLM.from_model(model, proc, family=family, name=name, config=config, **kw)
