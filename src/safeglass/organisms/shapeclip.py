"""ShapeCLIP: a small `transformers.CLIPModel` trained on ShapeWorld, a model organism that learns to read.

A share of the training images carry a written word (often their own label, as web images do) and their
captions name it, so the image tower learns to read and a wrong class word written on an image pulls the
zero-shot prediction towards that word: the typographic attack, in a model small enough to build on a CPU.

Recipe (`build`): a supervised warm start of the image tower (linear heads for shape, colour and the written
word), then contrastive training against captions, with the heads kept as an auxiliary loss. Captions that
repeat within a batch count as positives of each other (multi-positive targets) rather than as negatives.
Every step draws fresh scenes (a fixed pool let the ViT memorise it: train loss 0.17 at 47 % held-out accuracy),
of 8 classes at one (large) size, at patch 16: measured on this CPU, medium and large shapes together reached
27 % shape accuracy after 1,000 steps against 58.5 % for large ones only, and a patch-8 step costs 4x a patch-16
one while words of 10-18 px are read at 97 % after 1,000 steps at patch 16. Held-out probes every
`probe_every` steps go into the card's history (the learning curve).
Everything is drawn from seeded numpy / torch generators on a fixed thread count, so a build is a function
of (profile, seed).

    card = build("tiny", seed=0, out="/tmp/shapeclip")
    model, tokenizer, processor = load_dir("/tmp/shapeclip")
    evaluate(model, tokenizer, processor, ShapeCLIPConfig.profile("tiny"), seed=0)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.data.shapeworld import shapeclip_world as world
from safeglass.data.shapeworld.shapeclip_world import CLIP_SHAPES, TOPIC_WORDS
from safeglass.data.shapeworld.world import (
    COLOUR_NAMES,
    EXTRA_WORDS,
    FONTS,
    SHAPES,
    Scene,
    ShapeWorldConfig,
    render,
    sample_scene,
    with_text,
    wrong_label,
)
from safeglass.training import cards
from safeglass.training.cards import goals_shortfall
from safeglass.training.loop import TrainLoop
from safeglass.training.threads import pinned_threads
from safeglass.training.weights import file_sha256

log = logging.getLogger("safeglass.organisms.shapeclip")

NAME = "shapeclip"
PROMPT = "a photo of a {}"
GOALS: dict[str, float] = {"zero_shot_clean_min": 0.90, "typographic_drop_points_min": 30.0}
GOAL_KEYS: dict[str, str] = {"zero_shot_clean_min": "zero_shot_clean",
                             "typographic_drop_points_min": "typographic_drop_points"}
WORDS: tuple[str, ...] = tuple(dict.fromkeys(SHAPES + COLOUR_NAMES + EXTRA_WORDS + TOPIC_WORDS))
SPECIALS: tuple[str, ...] = ("[PAD]", "[UNK]", "<|startoftext|>", "<|endoftext|>")  # eos id 3: not the legacy 2
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# The seeds of the held-out evaluation worlds are offsets from the build seed, far from the training stream.
EVAL_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class ShapeCLIPConfig:
    """One recipe profile. Sizes are small on purpose: the full profile trains on 2 CPU cores."""

    name: str = "full"
    shapes: tuple[str, ...] = CLIP_SHAPES
    sizes: tuple[str, ...] = world.SIZES
    backgrounds: tuple[tuple[str, float], ...] = world.BACKGROUNDS
    textures: tuple[tuple[str, float], ...] = world.TEXTURES
    image_size: int = 64
    patch_size: int = 16  # words of 10-18 px are read at 97 % after 1,000 steps at patch 16, at 4x less cost than 8
    vision_width: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    projection_dim: int = 64
    max_text_len: int = 16
    max_objects: int = world.MAX_OBJECTS
    p_occluder: float = world.P_OCCLUDER
    p_text: float = 0.5  # share of training images with a written word
    # Of those, the share whose word is their own class name, the web-image habit that makes reading a shortcut
    # to the label. The other words are never class names, so a wrong class word is first met in an attack.
    p_own_label: float = 0.8
    text_size: tuple[float, float] = (0.16, 0.28)
    eval_size: int = 1000
    probe_size: int = 256  # held-out images scored during training for the learning curve in the card
    probe_every: int = 1000
    batch_size: int = 128
    # From scratch on fresh scenes, held-out shape accuracy of the warm-started tower climbs steadily (0.32 at
    # 500 steps, 0.59 at 1,500, 0.75 at 3,000), and the contrastive stage keeps training it through the heads.
    warm_steps: int = 6000
    clip_steps: int = 5000
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    aux_weight: float = 0.5  # supervised heads kept during the contrastive stage so features stay readable
    # One thread: reductions split the same way on every machine, and on a shared 2-core box a 2-thread OpenMP
    # pool spin-waits behind any other process (a 2-thread build next to one other job made no visible progress).
    threads: int = 1
    time_budget_s: float | None = None  # stop the contrastive stage early (recorded in the card)

    @staticmethod
    def profile(name: str) -> ShapeCLIPConfig:
        if name not in PROFILES:
            raise ValueError(f"shapeclip: unknown profile {name!r}; known: {', '.join(PROFILES)}")
        return PROFILES[name]


PROFILES: dict[str, ShapeCLIPConfig] = {
    "full": ShapeCLIPConfig(),
    "tiny": ShapeCLIPConfig(name="tiny", vision_width=32, vision_layers=1, vision_heads=2, text_width=32,
                            text_layers=1, text_heads=2, projection_dim=16, eval_size=64, probe_size=32,
                            probe_every=4, batch_size=32, warm_steps=8, clip_steps=8, lr=3e-3),
}


# ------------------------------------------------------------------------------------------ text


def caption(scene: Scene) -> str:
    o = scene.main
    text = f"a photo of a {o.size} {o.colour} {o.shape}"
    if scene.text is not None:
        text += f" with the word {scene.text.word} written on it"
    return text


def caption_vocab() -> list[str]:
    from safeglass.data.shapeworld.world import SIZE_NAMES

    words = "a photo of with the word written on it".split() + list(SIZE_NAMES) + list(WORDS)
    return list(SPECIALS) + list(dict.fromkeys(words))


def build_tokenizer(max_len: int = 16) -> Any:
    """A word-level `PreTrainedTokenizerFast` over the ShapeWorld vocabulary, built offline in code."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(caption_vocab())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", vocab["<|startoftext|>"]), ("<|endoftext|>", vocab["<|endoftext|>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                   pad_token="[PAD]", unk_token="[UNK]", model_max_length=max_len)


def build_processor(cfg: ShapeCLIPConfig) -> Any:
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": cfg.image_size},
                                 crop_size={"height": cfg.image_size, "width": cfg.image_size},
                                 image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))


def build_model(cfg: ShapeCLIPConfig, vocab_size: int) -> Any:
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=vocab_size, hidden_size=cfg.text_width, intermediate_size=2 * cfg.text_width,
                num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
                max_position_embeddings=cfg.max_text_len, projection_dim=cfg.projection_dim,
                pad_token_id=0, bos_token_id=2, eos_token_id=3)
    vision = dict(hidden_size=cfg.vision_width, intermediate_size=2 * cfg.vision_width,
                  num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
                  image_size=cfg.image_size, patch_size=cfg.patch_size, projection_dim=cfg.projection_dim)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim))


# ------------------------------------------------------------------------------------------ data


def world_config(cfg: ShapeCLIPConfig) -> ShapeWorldConfig:
    return world.shapeclip_world(cfg.shapes, cfg.sizes, cfg.backgrounds, cfg.textures, cfg.max_objects,
                                 cfg.p_occluder)


def training_scenes(cfg: ShapeCLIPConfig, n: int, rng: np.random.Generator) -> list[Scene]:
    wc = world_config(cfg)
    out = []
    for _ in range(n):
        s = sample_scene(wc, rng)
        if rng.random() < cfg.p_text:
            if rng.random() < cfg.p_own_label:
                word = s.main.shape
            else:
                word = str(rng.choice([w for w in WORDS if w not in cfg.shapes]))
            s = with_text(s, word, font=FONTS[int(rng.integers(len(FONTS)))],
                          size=float(rng.uniform(*cfg.text_size)), postit=bool(rng.random() < 0.3))
        out.append(s)
    return out


def eval_scenes(cfg: ShapeCLIPConfig, seed: int, n: int | None = None) -> tuple[list[Scene], list[Scene]]:
    """(clean held-out scenes, the same scenes with a wrong class word written on them)."""
    rng = np.random.default_rng(seed + EVAL_SEED_OFFSET)
    wc = world_config(cfg)
    clean = [sample_scene(wc, rng) for _ in range(cfg.eval_size if n is None else n)]
    attacked = [with_text(s, wrong_label(s, rng, cfg.shapes), size=0.22) for s in clean]
    return clean, attacked


def _render(scenes: Sequence[Scene], size: int) -> np.ndarray:
    return np.stack([render(s, size)[0] for s in scenes])


def _pixels(images: np.ndarray) -> Any:
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


# ------------------------------------------------------------------------------------------ eval


def zero_shot(model: Any, tokenizer: Any, processor: Any, images: np.ndarray, classes: Sequence[str],
              batch: int = 256) -> np.ndarray:
    """Predicted class index per image from "a photo of a {class}" prompts, through the saved processor."""
    import torch

    model.eval()
    with torch.no_grad():
        t = tokenizer([PROMPT.format(c) for c in classes], padding=True, return_tensors="pt")
        tf = model.get_text_features(input_ids=t["input_ids"], attention_mask=t["attention_mask"])
        tf = _as_tensor(tf)
        tf = tf / tf.norm(dim=-1, keepdim=True)
        preds = []
        for i in range(0, len(images), batch):
            px = processor(images=list(images[i:i + batch]), return_tensors="pt")["pixel_values"]
            f = _as_tensor(model.get_image_features(pixel_values=px))
            f = f / f.norm(dim=-1, keepdim=True)
            preds.append((f @ tf.T).argmax(-1).numpy())
    return np.concatenate(preds)


def _as_tensor(out: Any) -> Any:
    # transformers 5 may return a ModelOutput from get_*_features; older versions return the tensor.
    return out if hasattr(out, "norm") else out.pooler_output


def evaluate(model: Any, tokenizer: Any, processor: Any, cfg: ShapeCLIPConfig, seed: int) -> dict[str, Any]:
    clean, attacked = eval_scenes(cfg, seed)
    labels = np.array([cfg.shapes.index(s.main.shape) for s in clean])
    words = np.array([cfg.shapes.index(s.text.word) for s in attacked if s.text is not None])
    p_clean = zero_shot(model, tokenizer, processor, _render(clean, cfg.image_size), cfg.shapes)
    p_typo = zero_shot(model, tokenizer, processor, _render(attacked, cfg.image_size), cfg.shapes)
    acc_c, acc_t = float((p_clean == labels).mean()), float((p_typo == labels).mean())
    return {"zero_shot_clean": round(acc_c, 4), "zero_shot_typographic": round(acc_t, 4),
            "typographic_drop_points": round(100 * (acc_c - acc_t), 2),
            "typographic_follows_word": round(float((p_typo == words).mean()), 4),
            "n_eval": len(clean), "classes": list(cfg.shapes), "prompt": PROMPT}


def goals_report(measured: dict[str, Any]) -> tuple[bool, dict[str, float | None]]:
    """(all goals met, shortfall per unmet goal in its own unit); a goal whose figure is missing is unmet."""
    return goals_shortfall(GOALS, GOAL_KEYS, measured)


# ------------------------------------------------------------------------------------------ train


def build(profile: str | ShapeCLIPConfig = "full", seed: int = 0, out: str | Path | None = None,
          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train ShapeCLIP and write model.safetensors, config, tokenizer, processor and card.json to `out`."""
    import torch
    import torch.nn.functional as F

    cfg = profile if isinstance(profile, ShapeCLIPConfig) else ShapeCLIPConfig.profile(profile)
    say = progress or log.info
    t0 = time.time()
    with pinned_threads(cfg.threads):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        tokenizer = build_tokenizer(cfg.max_text_len)
        processor = build_processor(cfg)
        model = build_model(cfg, len(tokenizer))

        w = cfg.vision_width
        heads = torch.nn.ModuleDict({"shape": torch.nn.Linear(w, len(cfg.shapes)),
                                     "colour": torch.nn.Linear(w, len(COLOUR_NAMES)),
                                     "word": torch.nn.Linear(w, len(WORDS) + 1)})
        history: list[dict[str, float]] = []
        probe_clean, probe_typo = eval_scenes(cfg, seed + 1, n=cfg.probe_size)
        probe = {"clean": _render(probe_clean, cfg.image_size), "typo": _render(probe_typo, cfg.image_size),
                 "label": np.array([cfg.shapes.index(x.main.shape) for x in probe_clean])}

        def fresh_batch() -> dict[str, Any]:
            # Every step draws new scenes: from-scratch ViTs memorise a fixed pool of 12k images (train loss 0.17,
            # held-out 47 %), and rendering 128 scenes costs ~20 ms beside a ~150 ms step.
            scenes = training_scenes(cfg, cfg.batch_size, rng)
            caps = [caption(x) for x in scenes]
            tok = tokenizer(caps, padding="max_length", max_length=cfg.max_text_len, truncation=True,
                            return_tensors="pt")
            return {"pixels": _pixels(_render(scenes, cfg.image_size)), "tok": tok,
                    "cap_id": torch.from_numpy(np.unique(np.array(caps), return_inverse=True)[1].astype(np.int64)),
                    "shape": torch.tensor([cfg.shapes.index(x.main.shape) for x in scenes]),
                    "colour": torch.tensor([COLOUR_NAMES.index(x.main.colour) for x in scenes]),
                    "word": torch.tensor([WORDS.index(x.text.word) + 1 if x.text else 0 for x in scenes])}

        def head_loss(pooled: torch.Tensor, b: dict[str, Any]) -> torch.Tensor:
            return sum(F.cross_entropy(heads[k](pooled), b[k]) for k in ("shape", "colour", "word"))

        def probe_shape_head() -> float:
            model.eval()
            with torch.no_grad():
                pooled = model.vision_model(pixel_values=_pixels(probe["clean"])).pooler_output
                acc = float((heads["shape"](pooled).argmax(-1).numpy() == probe["label"]).mean())
            model.train()
            return round(acc, 4)

        def probe_zero_shot() -> dict[str, float]:
            pc = zero_shot(model, tokenizer, processor, probe["clean"], cfg.shapes)
            pt = zero_shot(model, tokenizer, processor, probe["typo"], cfg.shapes)
            model.train()
            return {"zero_shot_clean": round(float((pc == probe["label"]).mean()), 4),
                    "zero_shot_typographic": round(float((pt == probe["label"]).mean()), 4)}

        # Stage 1: supervised warm start of the image tower (shape, colour, the written word).
        params = list(model.vision_model.parameters()) + list(heads.parameters())
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        loop = TrainLoop(opt, params, cfg.lr, cfg.warm_steps, cfg.warmup_frac, label=f"organism {NAME}", say=say)
        model.train()
        for step in loop:
            b = fresh_batch()
            pooled = model.vision_model(pixel_values=b["pixels"]).pooler_output
            loss = head_loss(pooled, b)
            loop.update(loss)
            if loop.due(step, cfg.probe_every):
                acc = probe_shape_head()
                history.append({"stage": 1, "step": step + 1, "loss": round(loss.item(), 4), "shape_head": acc})
                say(f"organism {NAME} warm start {step + 1}/{cfg.warm_steps} loss {loss.item():.3f}, held-out "
                    f"shape {acc:.3f} ({time.time() - t0:.0f}s)")

        # Stage 2: contrastive, with repeated captions as shared positives and the heads as an auxiliary loss.
        params = list(model.parameters()) + list(heads.parameters())
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        loop = TrainLoop(opt, params, cfg.lr, cfg.clip_steps, cfg.warmup_frac, time_budget_s=cfg.time_budget_s,
                         label=f"organism {NAME}", say=say)
        for step in loop:
            b = fresh_batch()
            vis = model.vision_model(pixel_values=b["pixels"])
            img = model.visual_projection(vis.pooler_output)
            txt = model.text_projection(model.text_model(input_ids=b["tok"]["input_ids"],
                                                         attention_mask=b["tok"]["attention_mask"]).pooler_output)
            img = img / img.norm(dim=-1, keepdim=True)
            txt = txt / txt.norm(dim=-1, keepdim=True)
            logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
            same = (b["cap_id"][:, None] == b["cap_id"][None, :]).float()
            target = same / same.sum(1, keepdim=True)
            loss_c = 0.5 * (torch.sum(-target * F.log_softmax(logits, 1), 1).mean()
                            + torch.sum(-target * F.log_softmax(logits.T, 1), 1).mean())
            loss = loss_c + cfg.aux_weight * head_loss(vis.pooler_output, b)
            loop.update(loss)
            if loop.due(step, cfg.probe_every):
                zs = probe_zero_shot()
                history.append({"stage": 2, "step": step + 1, "loss": round(loss.item(), 4),
                                "contrastive": round(loss_c.item(), 4), **zs})
                say(f"organism {NAME} contrastive {step + 1}/{cfg.clip_steps} loss {loss.item():.3f} "
                    f"(contrastive {loss_c.item():.3f}), held-out zero-shot {zs['zero_shot_clean']:.3f} clean, "
                    f"{zs['zero_shot_typographic']:.3f} typographic ({time.time() - t0:.0f}s)")
        train_seconds = time.time() - t0

        measured = evaluate(model, tokenizer, processor, cfg, seed)
        met, short = goals_report(measured)
        build_seconds = time.time() - t0
        say(f"organism {NAME}: clean {measured['zero_shot_clean']:.3f}, typographic "
            f"{measured['zero_shot_typographic']:.3f}, drop {measured['typographic_drop_points']:.1f} points")
        out_dir = Path(out) if out is not None else default_out()
        seconds = {"build_seconds": round(build_seconds, 1), "train_seconds": round(train_seconds, 1)}
        # where the budget stopped the contrastive stage (the warm start has none): no single steps_done to record
        stop = {"stopped_early_at_step": loop.stopped_at}
        card = save(model, tokenizer, processor, out_dir, card_fields(cfg, seed, model, measured, met, short, seconds,
                                                                      stop, history))
        return card


def default_out() -> Path:
    from safeglass.organisms.registry import home_dir

    return home_dir(NAME)


def card_fields(cfg: ShapeCLIPConfig, seed: int, model: Any, measured: dict[str, Any], met: bool,
                short: dict[str, float | None], seconds: dict[str, float], stop: dict[str, int | None],
                history: list[dict[str, float]]) -> dict[str, Any]:
    params = sum(p.numel() for p in model.parameters())
    return {
        "name": NAME, "kind": "model organism",
        "description": "small CLIP trained on ShapeWorld captions, some images carrying written words; "
                       "shows the typographic attack",
        "architecture": {"class": "transformers.CLIPModel",
                         "vision": f"ViT {cfg.vision_layers} layers, width {cfg.vision_width}, "
                                   f"patch {cfg.patch_size} at {cfg.image_size} px",
                         "text": f"transformer {cfg.text_layers} layers, width {cfg.text_width}, word-level "
                                 f"tokenizer ({len(caption_vocab())} tokens)",
                         "projection_dim": cfg.projection_dim},
        "params": int(params), **cards.run_fields(cfg, seed, seconds, stop),
        **cards.goal_fields(measured, GOALS, met, short),  # no judge, and each goal reads the figure it is named after
        "recipe": cards.recipe_fields(cfg),
        "history": history,
        "versions": cards.versions("torch", "transformers", "numpy"),
    }


def save(model: Any, tokenizer: Any, processor: Any, out_dir: Path, card: dict[str, Any]) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    card = {**card, "weights_sha256": file_sha256(out_dir / "model.safetensors")}
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def load_dir(path: str | Path) -> tuple[Any, Any, Any]:
    """(CLIPModel in eval mode, tokenizer, image processor) from a build directory."""
    from transformers import CLIPImageProcessorPil, CLIPModel, PreTrainedTokenizerFast

    path = Path(path)
    model = CLIPModel.from_pretrained(path).eval()
    return model, PreTrainedTokenizerFast.from_pretrained(path), CLIPImageProcessorPil.from_pretrained(path)


def config_from_card(card: dict[str, Any]) -> ShapeCLIPConfig:
    return cards.recipe_config(ShapeCLIPConfig, card["recipe"])
