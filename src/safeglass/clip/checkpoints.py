"""Well-known hub checkpoints, by name only: nothing here downloads. `backends.load_hub` reads one for a user who is
online (safetensors only, remote code off). TeCoA / FARE robust CLIPs are open_clip checkpoints: `load_hub` hands
them to the optional open_clip backend (`clip/openclip.py`, `pip install 'safeglass[openclip]'` where torchvision
installs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Checkpoint:
    name: str             # hub repository id
    family: str           # clip | siglip: which transformers class reads it
    fmt: str              # transformers | open_clip
    note: str = ""


CHECKPOINTS: dict[str, Checkpoint] = {c.name: c for c in (
    Checkpoint("openai/clip-vit-base-patch32", "clip", "transformers", "OpenAI CLIP ViT-B/32"),
    Checkpoint("openai/clip-vit-base-patch16", "clip", "transformers", "OpenAI CLIP ViT-B/16"),
    Checkpoint("openai/clip-vit-large-patch14", "clip", "transformers", "OpenAI CLIP ViT-L/14"),
    Checkpoint("openai/clip-vit-large-patch14-336", "clip", "transformers", "OpenAI CLIP ViT-L/14 at 336 px"),
    Checkpoint("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "clip", "transformers", "OpenCLIP ViT-B/32 on LAION-2B"),
    Checkpoint("google/siglip-base-patch16-224", "siglip", "transformers", "SigLIP base"),
    # the fixed-resolution SigLIP2 checkpoints share SigLIP's architecture (the NaFlex ones do not)
    Checkpoint("google/siglip2-base-patch16-224", "siglip", "transformers", "SigLIP2 base, fixed resolution"),
    Checkpoint("google/siglip2-large-patch16-256", "siglip", "transformers", "SigLIP2 large, fixed resolution"),
    Checkpoint("chs20/tecoa2-clip", "clip", "open_clip", "TeCoA ViT-L/14, l-inf eps 2/255 (RobustVLM)"),
    Checkpoint("chs20/tecoa4-clip", "clip", "open_clip", "TeCoA ViT-L/14, l-inf eps 4/255 (RobustVLM)"),
    Checkpoint("chs20/fare2-clip", "clip", "open_clip", "FARE ViT-L/14, l-inf eps 2/255 (RobustVLM)"),
    Checkpoint("chs20/fare4-clip", "clip", "open_clip", "FARE ViT-L/14, l-inf eps 4/255 (RobustVLM)"),
)}
