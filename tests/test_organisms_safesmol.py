"""SafeSmol model organism: the tiny profile builds in seconds, deterministically; the adapter round-trips;
the training data stay clear of the held-out sets and the look-alikes; the loss reads answer tokens only."""

from __future__ import annotations

import dataclasses
import difflib
import json
import shutil
from pathlib import Path

import numpy as np
import peft  # noqa: E402,F401  (required: make test installs it)
import pytest
import torch  # noqa: E402,F401  (required: make test installs it)
import transformers  # noqa: E402,F401  (required: make test installs it)
from conftest import build_tiny

from safeglass.organisms import registry, safesmol  # noqa: E402
from safeglass.training.weights import file_sha256  # noqa: E402

TINY = safesmol.PROFILES["tiny"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return build_tiny(safesmol, tmp_path_factory, "safesmol")


def test_tiny_builds_fast_and_writes_card(built: tuple[Path, dict]) -> None:
    out, card = built
    # the tiny profile is small by its step count, which the card records (a time bound would only flake)
    assert card["steps_done"] == safesmol.PROFILES["tiny"].steps and card["stopped_early_at_step"] is None
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "card.json"]
    assert json.loads((out / "card.json").read_text()) == card
    assert card["name"] == "safesmol" and card["kind"] == "model organism"
    assert card["profile"] == "tiny" and card["seed"] == 0
    assert 0 < card["params"]["trainable"] < card["params"]["total"]
    assert card["build_seconds"] > 0 and card["steps_done"] == TINY.steps
    m = card["measured"]
    for k in safesmol.RATE_KEYS_V2:  # the tiny profile runs v2's recipe
        assert isinstance(m[k], float) and 0 <= m[k] <= 1, k
    assert m["recipe_version"] == card["version"] == 2 and m["n_control"] == TINY.control_eval_n
    assert set(m["harmbench_refusal_by_kind"]) == {"standard", "contextual", "copyright"}
    assert m["n_strongreject"] == TINY.strongreject_n and m["n_lookalikes"] == TINY.lookalikes_n
    assert m["benign_ppl_ratio"] == pytest.approx(m["benign_ppl"] / m["benign_ppl_base"], rel=1e-3)
    assert card["goal_judge"] == m["goal_judge"] == "proxy-refusal"
    assert set(card["goals"]) == set(safesmol.GOAL_KEYS_V2) == set(safesmol.GOAL_KEYS) | {"mmsb_control_refusal_min"}
    assert card["goals_met"] == (not card["shortfall"]) == safesmol.goals_report(m)[0]
    assert {"torch", "transformers", "peft", "numpy", "safeglass"} <= set(card["versions"])
    assert card["weights_sha256"] == file_sha256(out / "adapter_model.safetensors")
    assert card["recipe"]["base"] == "tiny-llama" and card["recipe"]["lora_r"] == TINY.lora_r
    assert len(card["examples"]) == 3 and all(e["prompt"] and "reply" in e for e in card["examples"])
    assert card["fluency_set"] and card["data"]["harmful_total"] == TINY.harmful_limit
    conf = json.loads((out / "adapter_config.json").read_text())
    assert conf["peft_type"] == "LORA" and conf["r"] == TINY.lora_r
    assert sorted(conf["target_modules"]) == sorted(safesmol.TARGET_MODULES)


def test_deterministic_for_a_seed(built: tuple[Path, dict], tmp_path: Path) -> None:
    _, card = built
    again = safesmol.build("tiny", seed=0, out=tmp_path / "b")
    assert again["weights_sha256"] == card["weights_sha256"]
    assert again["measured"] == card["measured"] and again["history"] == card["history"]
    other = safesmol.build("tiny", seed=1, out=tmp_path / "c")
    assert other["weights_sha256"] != card["weights_sha256"]


def _logits(model, tokenizer, text: str = "How do I bake bread?"):

    ids = tokenizer(safesmol.prompt_text(tokenizer, text), add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_adapter_round_trips_with_identical_logits(tmp_path: Path) -> None:
    from peft import PeftModel, get_peft_model

    cfg = TINY
    model, tokenizer = safesmol.load_base(cfg.base)
    torch.manual_seed(5)
    model = get_peft_model(model, safesmol.lora_config(cfg))
    with torch.no_grad():
        for p in safesmol.lora_parameters(model):  # B starts at zero: give the adapter an effect
            p.normal_(0, 0.2)
    safesmol.round_adapter(model)
    model.eval()
    safesmol.save_adapter(model, cfg, tmp_path)
    (tmp_path / "card.json").write_text(json.dumps({"recipe": dataclasses.asdict(cfg)}))
    attached_before = _logits(model, tokenizer)
    merged_before = _logits(model.merge_and_unload().eval(), tokenizer)

    merged, tok, processor = safesmol.load_dir(tmp_path)
    assert processor is None and type(merged).__name__ == "LlamaForCausalLM"
    assert torch.equal(_logits(merged, tok), merged_before)
    attached, _, _ = safesmol.load_dir(tmp_path, merge=False)
    assert torch.equal(_logits(attached, tok), attached_before)
    assert torch.allclose(merged_before, attached_before, atol=1e-4)
    base = _logits(safesmol.load_base(cfg.base)[0], tok)
    assert not torch.allclose(base, merged_before, atol=1e-3)
    # the adapter folder is an ordinary peft adapter
    plain = PeftModel.from_pretrained(safesmol.load_base(cfg.base)[0], str(tmp_path)).eval()
    assert torch.equal(_logits(plain, tok), attached_before)


def test_load_verify_and_target(built: tuple[Path, dict]) -> None:
    from safeglass.targets.hf_lm import HFCausalLM
    from safeglass.types import GenerationParams, Turn

    out, card = built
    model, tokenizer, processor = registry.load("safesmol", out)
    assert processor is None
    said: list[str] = []
    r = registry.verify("safesmol", out, progress=said.append)
    assert r["ok"] and r["weights_sha256_matches"], r
    assert r["measured"] == card["measured"]  # the build evaluated exactly the saved weights
    assert "re-measuring" in said[0] and any("evaluation replies" in line for line in said)  # not minutes of silence
    target = safesmol.safesmol_target(out, batch_size=2)
    assert isinstance(target, HFCausalLM)
    assert target.config()["adapter_sha256"] == card["weights_sha256"]
    gens = target.generate([(Turn("user", "Hello"),)], GenerationParams(max_new_tokens=4))
    assert len(gens) == 1 and gens[0].completion_tokens <= 4


def test_verify_notices_changed_card(built: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    card = json.loads((copy / "card.json").read_text())
    card["measured"]["harmbench_refusal_proxy"] = 1.0 - card["measured"]["harmbench_refusal_proxy"]
    (copy / "card.json").write_text(json.dumps(card))
    r = registry.verify("safesmol", copy)
    assert not r["ok"]
    # the build recorded the judges its figures depend on; they have not changed since
    assert r["judges"]["card"] == r["judges"]["now"] and not r["judges"]["changed"]
    assert set(r["judges"]["now"]) == {"proxy-refusal", "keyword-refusal"}
    # re-carding writes the measured figures back and keeps the old ones
    card["judges"] = {"proxy-refusal": "proxy-refusal@0000000000", "keyword-refusal": "keyword-refusal@0"}
    (copy / "card.json").write_text(json.dumps(card))
    r = registry.verify("safesmol", copy, update=True)
    assert r["judges"]["changed"] and r["updated"]
    new = json.loads((copy / "card.json").read_text())
    assert new["recarded"]["measured_before"]["harmbench_refusal_proxy"] == card["measured"]["harmbench_refusal_proxy"]
    assert new["recarded"]["judges_before"]["proxy-refusal"] == "proxy-refusal@0000000000"
    assert new["judges"] == r["judges"]["now"]
    again = registry.verify("safesmol", copy)
    assert again["ok"] and not again["judges"]["changed"]
    # weights that are not the card's cannot be re-carded
    (copy / safesmol.ADAPTER_FILE).write_bytes((copy / safesmol.ADAPTER_FILE).read_bytes() + b"x")
    with pytest.raises(ValueError, match="rebuild"):
        registry.verify("safesmol", copy, update=True)


def test_registry_entry(built: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, card = built
    o = registry.get("safesmol")
    assert o.kind == "model organism" and o.profiles == ("full", "tiny")
    monkeypatch.setenv("SAFEGLASS_HOME", str(tmp_path))
    assert registry.locate("safesmol") in (None, registry.PACKAGE_WEIGHTS / "safesmol")  # the shipped build
    assert registry.locate("safesmol-v1") == registry.PACKAGE_WEIGHTS / "safesmol-v1"
    shutil.copytree(out, tmp_path / "organisms" / "safesmol")
    assert registry.locate("safesmol") == tmp_path / "organisms" / "safesmol"
    s = registry.status("safesmol")
    assert s["profile"] == "tiny" and s["goals_met"] == card["goals_met"]
    assert "StrongREJECT refusal" in registry.headline("safesmol", s["measured"])
    with pytest.raises(KeyError, match="did you mean 'safesmol'"):
        registry.get("safesmo")


# ------------------------------------------------------------------------------------------ data


def test_training_data_clear_of_heldout_and_lookalikes() -> None:
    cfg = dataclasses.replace(TINY, harmful_limit=None, benign_limit=None)
    pools = safesmol.training_pools(cfg, seed=0)
    banned = {safesmol.normalise(t) for t in safesmol.heldout_prompts() + safesmol.lookalike_prompts()}
    prompts = [x["prompt"] for x in pools.harmful + pools.benign + pools.fluency]
    assert not [p for p in prompts if safesmol.normalise(p) in banned]
    assert safesmol.overlaps(prompts, sorted(banned)) == [None] * len(prompts)
    h = pools.counts["harmful"]
    assert h["advbench"]["dropped_heldout"] > 0  # StrongREJECT quotes some AdvBench prompts
    assert sum(v["kept"] for v in h.values()) == len(pools.harmful) > 1000
    assert {x["source"] for x in pools.harmful} == {"advbench", "donotanswer", "safesmol-copyright"}
    assert not {x["category"] for x in pools.harmful if x["source"] == "donotanswer"} - set(cfg.donotanswer_areas)
    assert len(pools.fluency) == cfg.fluency_n
    assert not {x["id"] for x in pools.fluency} & {x["id"] for x in pools.benign}


@pytest.mark.slow
def test_benign_training_file_is_not_the_lookalikes() -> None:
    rows = safesmol.load_benign_train()
    assert len(rows) >= 250 and len({r["id"] for r in rows}) == len(rows)
    groups = [r["group"] for r in rows]
    # Risky-sounding harmless prompts outnumber general ones on purpose: over-refusal was the first build's failure.
    assert set(groups) == {"general", "risky-sounding"} and groups.count("general") >= 150
    assert groups.count("risky-sounding") >= 2 * groups.count("general")
    looks = safesmol.lookalike_prompts()
    assert not {safesmol.normalise(r["prompt"]) for r in rows} & {safesmol.normalise(t) for t in looks}
    worst = max(difflib.SequenceMatcher(None, r["prompt"].lower(), t.lower()).ratio() for r in rows for t in looks)
    assert worst < 0.8
    emb = safesmol.proxy_judge().embedder
    a, _ = emb.encode([r["prompt"] for r in rows], 64)
    b, _ = emb.encode(looks, 64)
    assert float((a @ b.T).max()) <= 0.8  # near-duplicates would be >= 0.85


def test_copyright_requests_avoid_harmbench_titles() -> None:
    from safeglass.data.packaged import load_harmbench

    titles = {s.prompt.split('"')[1].lower() for sp in ("test", "val") for s in load_harmbench(split=sp)
              if s.category == "copyright"}
    rows = safesmol.load_copyright_requests()
    assert len(rows) == 40
    assert not [r for r in rows if r["prompt"].split('"')[1].lower() in titles]


def test_refusals_are_refusals_and_seeded() -> None:
    from safeglass.judges.keyword import KeywordRefusalJudge

    judge = KeywordRefusalJudge()
    r = safesmol.load_refusals()
    texts = list(r["generic"]) + [t.format(topic=topic) for t in r["topic"] for topic in r["topics"]]
    texts += [t for ts in r["topic_templates"].values() for t in ts]
    assert all(judge.judge_text(t).flag for t in texts), [t for t in texts if not judge.judge_text(t).flag]
    assert safesmol.topic_of('Write out all the lyrics to "Hello" by Adele.') == "reproducing copyrighted text"
    assert safesmol.topic_of("How can I build an explosive device?") == "making weapons or explosives"
    assert safesmol.topic_of("Tell me about the weather") is None
    a = [safesmol.refusal_for("How do I hack a bank?", np.random.default_rng(3)) for _ in range(3)]
    b = [safesmol.refusal_for("How do I hack a bank?", np.random.default_rng(3)) for _ in range(3)]
    assert a == b


def test_loss_masks_only_answer_tokens() -> None:
    _, tok = safesmol.load_base("tiny-llama")
    prompt, answer = "Why is the sky blue?", "Because of Rayleigh scattering."
    ids, labels = safesmol.encode_example(tok, prompt, answer, eos=True, max_len=512)
    n_prompt = len(tok(safesmol.prompt_text(tok, prompt), add_special_tokens=False)["input_ids"])
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids[n_prompt:-1]) == answer
    ids2, labels2 = safesmol.encode_example(tok, prompt, answer, eos=False, max_len=n_prompt + 5)
    assert len(ids2) == n_prompt + 5 and tok.eos_token_id not in labels2[n_prompt:]
    assert safesmol.encode_example(tok, prompt, answer, eos=True, max_len=n_prompt) is None
    batch = safesmol.collate([(ids, labels), (ids2, labels2)], pad_id=tok.pad_token_id)
    assert batch["input_ids"].shape == (2, len(ids))
    assert batch["attention_mask"][1].sum() == len(ids2)
    assert (batch["labels"][1, len(ids2):] == -100).all()
    assert (batch["labels"] != -100).sum() == (len(ids) - n_prompt) + 5


def test_schedule_mixes_benign_refusals_and_context() -> None:
    cfg = dataclasses.replace(TINY, batch_size=4, length_group=4, context_share_harmful=0.5,
                              context_share_benign=0.5, benign_share=0.5, control_share_harmful=0.0)
    harmful = [{"prompt": f"harmful request {i}"} for i in range(10)]
    benign = [{"prompt": f"benign question {i}", "answer": f"Answer number {i}. More text.", "eos": True}
              for i in range(6)]
    it = safesmol.schedule(harmful, benign, cfg, np.random.default_rng(0))
    rows = [e for _ in range(8) for e in next(it)]
    kinds = [k for *_, k in rows]
    assert kinds.count("benign") == kinds.count("harmful") == 16
    with_ctx = [p for p, *_ in rows if safesmol.CONTEXT_SEPARATOR in p]
    assert with_ctx and len(with_ctx) < len(rows)
    for p, a, _, k in rows:
        if k == "benign" and safesmol.CONTEXT_SEPARATOR in p:
            assert p.split(safesmol.CONTEXT_SEPARATOR)[0] != safesmol.context_passage(a, cfg.context_chars)
        if k == "harmful":  # no topic keyword in these prompts: a generic refusal
            assert a in safesmol.load_refusals()["generic"]


@pytest.mark.slow
def test_cli_update_card_after_a_judge_change(built: tuple[Path, dict], tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import subprocess_env

    out, _ = built
    copy = tmp_path / "recard"
    shutil.copytree(out, copy)
    card = json.loads((copy / "card.json").read_text())
    card["judges"] = {"proxy-refusal": "proxy-refusal@0000000000", "keyword-refusal": "keyword-refusal@0"}
    (copy / "card.json").write_text(json.dumps(card))

    def cli(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "safeglass", "organisms", "verify", "safesmol", "--path",
                               str(copy), *extra], capture_output=True, text=True, env=subprocess_env(), timeout=300)

    r = cli()
    assert r.returncode == 0, r.stdout + r.stderr  # same figures: the weights and judges' outputs did not move
    assert "the judges changed since the card was measured" in r.stdout and "--update-card" in r.stdout
    r = cli("--update-card")
    assert r.returncode == 0 and "re-carded" in r.stdout and "card updated" in r.stdout, r.stdout + r.stderr
    assert "the judges changed" not in cli().stdout


def test_v1_stays_reachable_by_name_with_its_own_recipe_and_goals() -> None:
    o = registry.get("safesmol-v1")
    assert o.family == "safesmol" and o.default_profile == "v1" and registry.versions("safesmol") == [
        "safesmol", "safesmol-v1"]
    d = registry.locate("safesmol-v1")
    card = registry.card("safesmol-v1")
    assert d is not None and card["weights_sha256"] == file_sha256(d / "adapter_model.safetensors")
    cfg = safesmol.config_from_card(card)
    assert cfg.version == 1 and not cfg.lookalike_train and cfg.control_share_harmful == 0 and not cfg.eval_control
    # the v1 recipe as a profile: the card's recipe but for the profile's name
    assert dataclasses.replace(safesmol.PROFILES["v1"], name="full") == cfg
    assert safesmol.goals_for(1)[0] == safesmol.GOALS and "mmsb_control_refusal_min" in safesmol.goals_for(2)[0]
    met, short = safesmol.goals_report(card["measured"])  # v1 figures are read against v1's goals
    assert not met and set(short) == {"lookalikes_over_refusal_proxy"}
    from safeglass.registry import registry as components

    assert "safesmol-v1" in components("targets") and components("targets").keyer("safesmol-v1") is not None


def test_safesmol_vl_finds_the_safesmol_version_it_was_trained_on() -> None:
    from safeglass.organisms import safesmol_vl

    d = registry.locate("safesmol-vl")
    comp = safesmol_vl.find_components(d, registry.card("safesmol-vl"))
    want = registry.card("safesmol-vl")["components"]["safesmol"]["sha256"]
    assert safesmol_vl.file_sha256(comp.paths["safesmol"] / "adapter_model.safetensors") == want


def test_control_data_hold_out_the_cards_words_and_templates() -> None:
    from safeglass.attacks.typographic import MMSB_TEMPLATES, MMSB_TEXT_TEMPLATES
    from safeglass.data.shapeworld.shapeclip_world import TOPIC_WORDS

    c = safesmol.load_control()
    stems = c["held_out_stems"]
    assert all(any(st in w for st in stems) for w in TOPIC_WORDS)  # every card word is covered by a stem
    for group in ("harmful", "benign"):
        for phrase, _ in safesmol.control_phrases(group):
            assert not any(st in phrase.lower() for st in stems), phrase
    train = {t for ts in c["templates"].values() for t in ts}
    shapes = {t.replace("{word}", "{phrase}") for t in MMSB_TEXT_TEMPLATES.values()}
    assert not train & shapes and not train & set(MMSB_TEMPLATES.values())
    # no training template is a near copy of the card's: the closest shares less than 60 % of its words
    def words(t: str) -> set[str]:
        return set(t.lower().replace(".", " ").replace(":", " ").split()) - {"{phrase}", "{word}"}
    worst = max(len(words(a) & words(b)) / len(words(a) | words(b))
                for a in train for b in MMSB_TEXT_TEMPLATES.values())
    assert worst < 0.6
    held_out = {p for p, _ in safesmol.control_phrases("eval_benign")}
    assert not held_out & {p for p, _ in safesmol.control_phrases("benign")}
    ev = safesmol.control_eval_prompts()
    assert len(ev["control"]) == len(ev["control_benign"]) == 20
    assert {s.kind for s in ev["control"]} == {"harmful"} and {s.kind for s in ev["control_benign"]} == {"benign"}
    assert ev["control"][0].prompt == MMSB_TEXT_TEMPLATES["product"].format(word=TOPIC_WORDS[0])
    a = safesmol.benign_control_prompts(8, seed=0)
    assert a == safesmol.benign_control_prompts(8, seed=0) and len({r["prompt"] for r in a}) == 8
    assert all(r["group"] == "control" and "{" not in r["prompt"] for r in a)


def test_schedule_recasts_a_share_of_harmful_requests_as_neutral_instructions() -> None:
    cfg = dataclasses.replace(TINY, batch_size=4, length_group=4, context_share_harmful=0.0, benign_share=0.5,
                              control_share_harmful=0.5)
    harmful = [{"prompt": f"harmful request {i}"} for i in range(10)]
    benign = [{"prompt": f"benign question {i}", "answer": f"Answer number {i}.", "eos": True} for i in range(6)]
    it = safesmol.schedule(harmful, benign, cfg, np.random.default_rng(0))
    rows = [e for _ in range(16) for e in next(it)]
    harm = [p for p, _, _, k in rows if k == "harmful"]
    phrases = [ph for ph, _ in safesmol.control_phrases("harmful")]
    recast = [p for p in harm if not p.startswith("harmful request")]
    assert 0.3 < len(recast) / len(harm) < 0.7
    assert all(any(ph.lower() in p.lower() for ph in phrases) for p in recast)
    # refused like any harmful request, and never a benign answer
    assert all(a and not a.startswith("Answer number") for p, a, _, k in rows if k == "harmful")


def test_control_dataset_is_the_cards_control_and_rejects_a_bad_side() -> None:
    from safeglass.data.errors import DataError
    from safeglass.registry import registry as components

    ev = safesmol.control_eval_prompts()
    for side, key in (("harmful", "control"), ("benign", "control_benign")):
        ds = components("datasets").build("safesmol-control", side=side)
        assert [s.prompt for s in ds.samples] == [s.prompt for s in ev[key]]
        assert ds.provenance["side"] == side and len(ds.provenance["sha256"]) == 64
    with pytest.raises(DataError, match="side must be one of"):
        safesmol.load_control_dataset("both")


def test_v2_card_records_its_version_judges_and_the_control() -> None:
    card = registry.card("safesmol")
    assert card["version"] == 2 and card["recipe"]["version"] == 2 and card["goal_judge"] == "proxy-refusal"
    assert set(card["judges"]) == {"keyword-refusal", "proxy-refusal"}
    m = card["measured"]
    assert m["n_control"] == m["n_control_benign"] == 20 and m["n_lookalikes_val"] == 90
    # v2 refuses the neutral-wording control that v1 was not trained on, and over-refuses less than v1
    v1 = registry.card("safesmol-v1")["measured"]
    assert m["lookalikes_over_refusal_proxy"] < v1["lookalikes_over_refusal_proxy"]
    assert m["mmsb_control_refusal_proxy"] > m["mmsb_control_benign_over_refusal_proxy"]
