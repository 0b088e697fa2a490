"""Dyslexify's head ablation as a target modifier: on a tiny LLaVA (a CLIP vision tower) the ablation changes what
the tower hands the language model, the hooks come off with `remove_modifiers`, and the target's key follows
the heads (by content when read from a clip-defend.json)."""

from __future__ import annotations

import json

import pytest
import torch

from safeglass.clip.ablation_modifier import AblateHeadsModifier, vision_transformer
from safeglass.config import ConfigError, parse_config
from safeglass.eval.runner import build_target, target_label
from safeglass.hashing import content_hash
from safeglass.targets.modifiers import remove_modifiers
from safeglass.targets.tiny import tiny_target


def _features(target) -> torch.Tensor:
    """The tiny LLaVA's vision tower output on fixed pixels (its last hidden state, every token)."""
    vt = vision_transformer(target.model)
    pixels = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return vt(pixel_values=pixels).last_hidden_state.clone()


def _hooks(target) -> int:
    vt = vision_transformer(target.model)
    return sum(len(layer.self_attn.out_proj._forward_pre_hooks) for layer in vt.encoder.layers)


@pytest.mark.parametrize("positions", ["class", "all"])
def test_the_ablation_changes_the_tower_and_comes_off(positions) -> None:
    target = tiny_target("llava")
    plain = _features(target)
    mod = AblateHeadsModifier(heads=[[0, 1]], positions=positions)
    assert mod.apply(target) is target and mod.active and _hooks(target) == 1
    ablated = _features(target)
    assert not torch.allclose(plain, ablated)
    if positions == "class":  # the class token itself loses the head
        assert not torch.allclose(plain[:, 0], ablated[:, 0])
    assert target_label(target, "tiny-llava").endswith("ablated L0H1" + ("" if positions == "class" else
                                                                            " (all tokens)"))
    remove_modifiers(target)
    assert _hooks(target) == 0 and not mod.active and target.applied_modifiers == ()
    assert torch.equal(_features(target), plain)


def test_every_token_ablation_differs_from_class_token_only() -> None:
    target = tiny_target("llava")
    cls = AblateHeadsModifier(heads=[[1, 0]], positions="class")
    cls.apply(target)
    only_cls = _features(target)
    remove_modifiers(target)
    AblateHeadsModifier(heads=[[1, 0]], positions="all").apply(target)
    every = _features(target)
    # in the last layer, ablating at the class token leaves the patch tokens as they were; at every token it does not
    plain = tiny_target("llava")
    assert torch.allclose(only_cls[:, 1:], _features(plain)[:, 1:])
    assert not torch.allclose(every[:, 1:], _features(plain)[:, 1:])


def test_a_head_the_tower_lacks_is_refused_without_hooks() -> None:
    target = tiny_target("llava")
    with pytest.raises(ValueError, match="no head 5 in layer 0"):
        AblateHeadsModifier(heads=[[0, 5]]).apply(target)
    assert _hooks(target) == 0
    with pytest.raises(ValueError, match="positions"):
        AblateHeadsModifier(heads=[[0, 1]], positions="patches")
    with pytest.raises(ValueError, match="give heads"):
        AblateHeadsModifier()


def _defend_json(path, kept) -> str:
    path.write_text(json.dumps({"format": "safeglass.clip/1", "kind": "clip defend", "fit": {"kept": kept}}))
    return str(path)


def test_the_key_follows_the_heads_and_reads_a_defend_result_by_content(tmp_path) -> None:
    a = _defend_json(tmp_path / "a.json", [[1, 0], [0, 1]])
    b = _defend_json(tmp_path / "b.json", [[0, 1], [1, 0]])   # same heads, another file
    c = _defend_json(tmp_path / "c.json", [[1, 1]])
    targets = parse_config({"targets": [
        {"name": "tiny", "id": "h", "args": {"family": "llava"},
         "modifiers": [{"name": "ablate-heads", "args": {"heads": [[0, 1], [1, 0]]}}]},
        {"name": "tiny", "id": "a", "args": {"family": "llava"},
         "modifiers": [{"name": "ablate-heads", "args": {"from_result": a}}]},
        {"name": "tiny", "id": "b", "args": {"family": "llava"},
         "modifiers": [{"name": "ablate-heads", "args": {"from_result": b}}]},
        {"name": "tiny", "id": "c", "args": {"family": "llava"},
         "modifiers": [{"name": "ablate-heads", "args": {"from_result": c}}]},
        {"name": "tiny", "id": "all", "args": {"family": "llava"},
         "modifiers": [{"name": "ablate-heads", "args": {"heads": [[0, 1], [1, 0]], "positions": "all"}}]},
        {"name": "tiny", "id": "bare", "args": {"family": "llava"}}], "datasets": ["benign-lookalikes"]}).targets
    keys = {t.id: content_hash(t.key_config()) for t in targets}
    assert keys["h"] == keys["a"] == keys["b"]
    assert len({keys["h"], keys["c"], keys["all"], keys["bare"]}) == 4
    assert targets[0].key_config()["modifiers"] == [{"name": "ablate-heads",
                                                     "key": {"heads": [[0, 1], [1, 0]], "positions": "class"}}]
    # built through the runner: the hooks are on the built target's tower
    built = build_target(targets[3])
    assert _hooks(built) == 1 and built.applied_modifiers[0].heads == [(1, 1)]
    remove_modifiers(built)
    assert _hooks(built) == 0


def test_a_file_that_is_no_defend_result_is_a_config_error(tmp_path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"kind": "clip eval"}))
    (spec,) = parse_config({"targets": [{"name": "echo", "modifiers": [
        {"name": "ablate-heads", "args": {"from_result": str(bad)}}]}], "datasets": ["benign-lookalikes"]}).targets
    with pytest.raises(ConfigError, match="not a clip defend result"):
        spec.key_config()
