"""Shared by the tests/test_clip_*.py files: the shipped ShapeCLIP through the clip backend."""

from __future__ import annotations

from conftest import require

from safeglass.organisms import registry

SHAPECLIP_DIR = registry.PACKAGE_WEIGHTS / "shapeclip"


def shapeclip_backend():
    from safeglass.clip.backends import load_shapeclip

    require((SHAPECLIP_DIR / "model.safetensors").is_file(), "ShapeCLIP's packaged weights",
            "they ship in src/safeglass/organisms/weights/shapeclip")
    return load_shapeclip(str(SHAPECLIP_DIR))
