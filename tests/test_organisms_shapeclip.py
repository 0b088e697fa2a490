"""ShapeCLIP model organism: the tiny profile builds in seconds, deterministically, and round-trips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: E402,F401  (required: make test installs it)
import transformers  # noqa: E402,F401  (required: make test installs it)
from conftest import build_tiny, subprocess_env

from safeglass.organisms import registry, shapeclip  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return build_tiny(shapeclip, tmp_path_factory, "shapeclip")


def test_tiny_builds_fast_and_writes_card(built: tuple[Path, dict]) -> None:
    out, card = built
    # the tiny profile is small by its step counts, which the card records (a time bound would only flake)
    assert (card["recipe"]["warm_steps"], card["recipe"]["clip_steps"]) == (shapeclip.PROFILES["tiny"].warm_steps,
                                                                        shapeclip.PROFILES["tiny"].clip_steps)
    assert card["stopped_early_at_step"] is None
    for f in ("model.safetensors", "config.json", "tokenizer.json", "preprocessor_config.json", "card.json"):
        assert (out / f).is_file(), f
    on_disk = json.loads((out / "card.json").read_text())
    assert on_disk == card
    assert card["name"] == "shapeclip" and card["kind"] == "model organism"
    assert card["profile"] == "tiny" and card["seed"] == 0
    assert card["params"] > 0 and card["build_seconds"] > 0
    m = card["measured"]
    for k in ("zero_shot_clean", "zero_shot_typographic", "typographic_drop_points"):
        assert isinstance(m[k], float)
    assert 0 <= m["zero_shot_clean"] <= 1 and 0 <= m["zero_shot_typographic"] <= 1
    assert m["typographic_drop_points"] == pytest.approx(100 * (m["zero_shot_clean"] - m["zero_shot_typographic"]),
                                                         abs=0.02)
    assert set(card["goals"]) == {"zero_shot_clean_min", "typographic_drop_points_min"}
    assert isinstance(card["goals_met"], bool)
    assert card["goals_met"] == (not card["shortfall"])
    assert {"torch", "transformers", "numpy", "safeglass"} <= set(card["versions"])
    assert card["architecture"]["class"] == "transformers.CLIPModel"


def test_deterministic_for_a_seed(built: tuple[Path, dict], tmp_path: Path) -> None:
    _, card = built
    again = shapeclip.build("tiny", seed=0, out=tmp_path / "b")
    assert again["weights_sha256"] == card["weights_sha256"]
    assert again["measured"] == card["measured"]
    other = shapeclip.build("tiny", seed=1, out=tmp_path / "c")
    assert other["weights_sha256"] != card["weights_sha256"]


def test_load_and_verify_round_trip(built: tuple[Path, dict]) -> None:
    from transformers import CLIPModel

    out, card = built
    model, tokenizer, processor = registry.load("shapeclip", out)
    assert isinstance(model, CLIPModel)
    ids = tokenizer(["a photo of a star"])["input_ids"][0]
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.eos_token_id == model.config.text_config.eos_token_id
    assert tokenizer.unk_token_id not in ids
    px = processor(images=[np.zeros((64, 64, 3), np.uint8)], return_tensors="pt")["pixel_values"]
    assert px.shape == (1, 3, 64, 64)
    r = registry.verify("shapeclip", out)
    assert r["ok"] and r["weights_sha256_matches"], r
    assert r["measured"]["zero_shot_clean"] == card["measured"]["zero_shot_clean"]


def test_verify_notices_changed_weights(built: tuple[Path, dict], tmp_path: Path) -> None:
    import shutil

    out, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    card = json.loads((copy / "card.json").read_text())
    card["measured"]["zero_shot_clean"] = min(1.0, card["measured"]["zero_shot_clean"] + 0.5)
    (copy / "card.json").write_text(json.dumps(card))
    assert not registry.verify("shapeclip", copy)["ok"]


def test_locate_prefers_safeglass_home(built: tuple[Path, dict], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    out, _ = built
    monkeypatch.setenv("SAFEGLASS_HOME", str(tmp_path))
    shutil.copytree(out, tmp_path / "organisms" / "shapeclip")
    assert registry.locate("shapeclip") == tmp_path / "organisms" / "shapeclip"
    assert registry.status("shapeclip")["profile"] == "tiny"


def test_unknown_organism_suggests() -> None:
    with pytest.raises(KeyError, match="did you mean 'shapeclip'"):
        registry.get("shapeclp")


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**subprocess_env(), "SAFEGLASS_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "safeglass", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.slow
def test_cli_list_build_verify(tmp_path: Path) -> None:
    r = _cli("organisms", "list", home=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in registry.ORGANISMS:  # each listed, built (shipped in the package) or not
        block = r.stdout.split(f"model organism {name}:")[1].split("model organism ")[0]
        assert "not built" in block or ("built (" in block and "goals met:" in block), block
    r = _cli("organisms", "list", "--json", home=tmp_path)
    rows = json.loads(r.stdout)
    assert ("shapeclip", "model organism") in [(x["name"], x["kind"]) for x in rows]
    r = _cli("organisms", "build", "shapeclip", "--profile", "tiny", "--seed", "3", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "model organism shapeclip (tiny profile, seed 3)" in r.stdout
    assert (tmp_path / "organisms" / "shapeclip" / "card.json").is_file()
    r = _cli("organisms", "verify", "shapeclip", home=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "model organism shapeclip" in r.stdout and "matches its card" in r.stdout
    assert "zero_shot_clean" in r.stdout
    r = _cli("organisms", "verify", "nosuch", home=tmp_path)
    assert r.returncode == 2 and "unknown organism" in r.stderr


def test_card_keeps_a_held_out_learning_curve(built: tuple[Path, dict]) -> None:
    _, card = built
    cfg = shapeclip.ShapeCLIPConfig.profile("tiny")
    warm = [h for h in card["history"] if h["stage"] == 1]
    clip = [h for h in card["history"] if h["stage"] == 2]
    assert [h["step"] for h in warm][-1] == cfg.warm_steps and [h["step"] for h in clip][-1] == cfg.clip_steps
    assert all(0 <= h["shape_head"] <= 1 for h in warm)
    assert all(0 <= h["zero_shot_clean"] <= 1 and 0 <= h["zero_shot_typographic"] <= 1 for h in clip)


def test_a_spent_time_budget_stops_the_contrastive_stage(tmp_path: Path) -> None:
    import dataclasses

    cfg = dataclasses.replace(shapeclip.PROFILES["tiny"], time_budget_s=-1.0)  # spent before its first step
    said: list[str] = []
    card = shapeclip.build(cfg, seed=0, out=tmp_path, progress=said.append)
    assert card["stopped_early_at_step"] == 0
    assert [h["stage"] for h in card["history"]] == [1, 1]  # the warm start has no budget and ran in full
    assert "organism shapeclip: time budget -1s spent at step 0" in said


def test_written_words_are_own_labels_or_never_class_names() -> None:
    # A wrong class word must first appear in the attack: training never pairs a shape with another class name.
    cfg = shapeclip.ShapeCLIPConfig.profile("full")
    scenes = shapeclip.training_scenes(cfg, 400, np.random.default_rng(0))
    written = [s for s in scenes if s.text is not None]
    assert 120 < len(written) < 280  # p_text 0.5
    own = [s for s in written if s.text.word == s.main.shape]
    assert len(own) > 0.6 * len(written)  # p_own_label 0.8
    assert all(s.text.word not in cfg.shapes for s in written if s.text.word != s.main.shape)
    assert {s.main.size for s in scenes} == set(cfg.sizes)
    assert set(shapeclip.TOPIC_WORDS) <= set(shapeclip.WORDS)
    assert set(shapeclip.TOPIC_WORDS) <= set(shapeclip.caption_vocab())


def test_fresh_scenes_follow_the_seed() -> None:
    cfg = shapeclip.ShapeCLIPConfig.profile("tiny")
    a = shapeclip.training_scenes(cfg, 20, np.random.default_rng(5))
    b = shapeclip.training_scenes(cfg, 20, np.random.default_rng(5))
    c = shapeclip.training_scenes(cfg, 20, np.random.default_rng(6))
    assert [shapeclip.caption(s) for s in a] == [shapeclip.caption(s) for s in b]
    assert [shapeclip.caption(s) for s in a] != [shapeclip.caption(s) for s in c]
