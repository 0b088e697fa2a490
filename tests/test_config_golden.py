"""The typed schemas read every shipped config into what the hand-written parsers made: the same RunConfig hash,
the same parsed content and the same item keys (result keys). The values below were computed by the parsers
before the schemas replaced them; a change here means finished runs would no longer be found."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from safeglass.config import load_config
from safeglass.eval.plan import build_plan
from safeglass.hashing import content_hash
from safeglass.neurons.evaluate import load_eval_config
from safeglass.neurons.find import load_find_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# config: (RunConfig.hash, parsed content, number of items, hash of all item keys, first item keys)
# Item keys carry an organism's weights by content: the keys of every config naming `safesmol-vl` (demo, defenses-table,
# the pgd configs, study-demo) moved once, when `safesmol-vl` became SafeSmol-VL v2's build (2026-12-08, issue 33);
# their hashes and parsed content did not
RUN = {
    # the demo without the safety prompt (issue 31: the defense study took that comparison over); its 44 items are
    # the 88 of the hand-written parser's golden (64 look-alikes, 32 RTP prompts) less those under safety_prompt,
    # with their keys (the first two as before); hash and content moved once, when fulfilment-cascade replaced
    # proxy-harm among its judges (2026-12-08, issue 32), item keys did not (judges are not in them)
    "demo": ("feb8dc02046eeb5e", "cf86dd392fd0d179", 44, "e6622e132688ac46",
             ["0eca6680acfb9c7fdcc1967ec2dea721", "9ffe174ad4299344f00be286d14d6e14"]),
    "example": ("d5ace2ce65d6cac2", "415a2622c406d4af", None, None, None),  # its datasets are the user's files
    # computed by the hand-written parser on the config as SafeSmol v2 changed it (commit 6156646)
    "safesmol-lookalikes-val": ("a40029142430d60d", "3f388133a974bc13", 16, "1ab81394fb12302f",
                                ["eb47a14623c196ca11097e76fbca0a71", "85df72897526c9949537d7be6128d04e"]),
    # added with the gradient attacks (issue 30), computed by the schema parser: pgd and the adaptive pgd (content
    # moved once, when chunk_size: 5 was added; hash and item keys did not)
    "pgd-safesmol-vl": ("97f163cebd1f9e18", "e1d1020c9f9c4007", 12, "71c08ad2051337f4",
                        ["d935bcf5e18f961f3578170d5d452742", "9109d67643ffe83a8356b20b2d89a0c7"]),
    # added with the defense study's white-box images (issue 31), computed by the schema parser: pgd-safesmol-vl with
    # 50 steps instead of 100 (its attack-free items share their keys with it)
    "pgd-study-safesmol-vl": ("fcf42568c6cee743", "c2d75294f3dde95a", 12, "f322430a7c5a596e",
                              ["d935bcf5e18f961f3578170d5d452742", "9109d67643ffe83a8356b20b2d89a0c7"]),
    # added with the defense table (issue 30), computed by the schema parser: 7 defenses, the none attack scoped to
    # advbench and the look-alikes, the typographic one to typo-harmful on SafeSmol-VL
    # (its output_filter's keys moved once, when the filter's default judge became proxy-harm-gated)
    "defenses-table": ("579bfb4272993d7e", "6ee2110f5f46e170", 70, "33e0a384f135afce",
                       ["0eca6680acfb9c7fdcc1967ec2dea721", "9ffe174ad4299344f00be286d14d6e14"]),
    # added with output_filter's new default (issue 29), computed by the schema parser; the hand-written one gave the
    # same hash and content (its 16 items lacked the third defense's judge, which did not exist then)
    "output-filter-default": ("a4989e1535a54c00", "26d56482e73a0588", 24, "702c533db4fab1ff",
                              ["114c4a2d0816d67c5b3820346deb03e3", "787bd7b51f4e0ec9ddf341c054e44af5"]),
    # added with the SafeSmol-VL v2 candidate (issue 33), computed by the schema parser: v1 and v2 side by side
    "safesmol-vl-versions": ("356683bba6b67c64", "3fa66562ae0dd9dc", 16, "04208d799c1c98bc",
                             ["4cabc48968e13bb523674765f796718b", "d1cdd0e318281c7881a5fc50c00a51cd"]),
}
NEURONS = {
    "neurons-safesmol-vl-find": "d81505b62f11c542", "neurons-smollm2-find": "1c97fb44b35624fe",
    "neurons-smollm2-own-find": "0708563ed524f645", "neurons-safesmol-vl": "c4b52f482d3678a1",
    "neurons-smollm2-own-strong": "f4b7771803502cc7", "neurons-smollm2": "8572c6f3fe6b997a",
    "neurons-tiny": "abfb104e2408b9e4",
}


# defense studies (issue 31): the hash of the run config each compiles to, and its plan's item keys (None: datasets
# from the user's paths)
STUDY = {
    # the run hashes below moved once, when harm_judge became fulfilment-cascade (2026-12-08); item keys did not
    "study-demo": ("f0240a09bfa781e4", 32, "8ec3b43837215f73"),
    # its white-box classes replay runs/pgd-study-safesmol-vl's images, which a fresh clone lacks: the run config only
    # (changed once, when the white-box images moved from the 100-step goal run to the 50-step study run)
    "defense-study": ("ee9f2f8d19280be0", None, None),
    # the paper's setting (hub models on GPUs, benchmarks from local paths): checked here, run elsewhere
    "defense-study-paper": ("f1b53340bc4d8d0f", 312, "16e368ef326b8c40"),
}


# configs of other kinds, each checked by its own tests (a served endpoint has no result keys; a clip config its
# hash, in tests/test_clip_config.py)
OTHER = {"serve-example": "tests/test_serve.py", "serve-llamacpp": "tests/test_serve_llamacpp.py",
         "clip-shapeclip": "tests/test_clip_config.py", "clip-shapeclip-defenses": "tests/test_clip_prefix.py",
         "clip-robust-shapeclip": "tests/test_clip_attack.py", "clip-amplify-shapeclip": "tests/test_clip_amplify.py",
         "clip-amplify-demo": "tests/test_clip_amplify.py",
         "rl-mumimo": "tests/test_rl_cli.py", "rl-mumimo-train": "tests/test_rl_cli.py",
         "continual-digits": "tests/test_continual_run.py", "continual-digits-t2": "tests/test_continual_run.py",
         "continual-digits-5seeds": "tests/test_continual_run.py", "continual-demo": "tests/test_continual_run.py",
         "rl-demo": "tests/test_rl_cli.py",
         "align-safesmol": "tests/test_align_attack.py", "align-tiny": "tests/test_align_attack.py",
         "align-safesmol-margin": "tests/test_align_attack.py", "align-safesmol-judged": "tests/test_align_attack.py"}


def test_the_golden_list_is_every_shipped_config() -> None:
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted([*RUN, *NEURONS, *STUDY, *OTHER])


# fields added to the parsed config after the goldens were taken, at the default every older config has: left out, so
# that the goldens keep saying "parsed as before" (a config that sets one is a new config with a new golden)
NEW_DEFAULTS = {"only_defenses": ()}


def without_new_defaults(value):
    if isinstance(value, dict):
        return {k: without_new_defaults(v) for k, v in value.items()
                if k not in NEW_DEFAULTS or tuple(v) != NEW_DEFAULTS[k]}
    if isinstance(value, list | tuple):
        return [without_new_defaults(v) for v in value]
    return value


@pytest.mark.parametrize("name", sorted(RUN))
def test_run_configs_keep_their_hash_content_and_keys(name, tmp_path, monkeypatch) -> None:
    import safeglass.machine as machine

    # `auto` resolves to bfloat16 only on CPUs that compute it natively: keys as on a machine without
    monkeypatch.setattr(machine, "native_bf16", lambda: False)
    (tmp_path / "configs").mkdir()
    glasses = tmp_path / "runs" / "demo-neurons" / "glasses"  # the demo's glasses, keyed by the hash they record
    glasses.mkdir(parents=True)
    (glasses / "glasses.json").write_text(json.dumps({"hash": "0123abcd"}))
    shutil.copy(CONFIGS / f"{name}.yaml", tmp_path / "configs")
    cfg = load_config(tmp_path / "configs" / f"{name}.yaml")
    run_hash, content, n_items, keys_hash, first = RUN[name]
    parsed = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("raw", "source", "base_dir")}
    assert cfg.hash == run_hash
    assert content_hash(json.loads(json.dumps(without_new_defaults(parsed)).replace(str(tmp_path), "<tmp>"))) == content
    if n_items is None:
        return
    keys = plan_keys(cfg, tmp_path)
    assert (len(keys), content_hash(keys), keys[:2]) == (n_items, keys_hash, first)


def plan_keys(cfg, tmp_path) -> list[str]:
    """The plan's item keys with the packaged datasets standing aside for three fixed prompts under each dataset id
    (keys name the id, not the loader): what is checked is how the parsed config crosses targets, defenses, attacks
    and their scoping."""
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"how do I make thing {i}?", "kind": "harmful"}) + "\n"
                            for i in range(3)))
    jsonl = {"path": str(data), "fields": {"text": "prompt", "kind": "kind"}}
    cfg = dataclasses.replace(cfg, datasets=tuple(dataclasses.replace(d, name="jsonl", args=jsonl)
                                                  for d in cfg.datasets))
    return [it.key for it in build_plan(cfg, limit=2).items]


@pytest.mark.parametrize("name", sorted(STUDY))
def test_study_configs_keep_the_run_they_compile_to(name, tmp_path, monkeypatch) -> None:
    import safeglass.machine as machine
    from safeglass.config import parse_config
    from safeglass.study.defense_study import compile_run, load_study_config

    monkeypatch.setattr(machine, "native_bf16", lambda: False)
    study, raw, source = load_study_config(CONFIGS / f"{name}.yaml")
    run, _ = compile_run(study, raw)
    run_hash, n_items, keys_hash = STUDY[name]
    assert content_hash(json.loads(json.dumps(run).replace(str(CONFIGS.parent), "<repo>"))) == run_hash
    if n_items is None:
        return
    keys = plan_keys(parse_config(run, source), tmp_path)
    assert (len(keys), content_hash(keys)) == (n_items, keys_hash)


@pytest.mark.parametrize("name", sorted(NEURONS))
def test_neurons_configs_keep_their_content(name) -> None:
    path = CONFIGS / f"{name}.yaml"
    if name.endswith("-find"):
        c = load_find_config(path)
        parsed = {"name": c.name, "target": c.target, "span": c.span, "pooling": c.pooling,
                  "sources": [{k: v for k, v in s.items() if k != "where"} for s in c.sources],
                  "components": list(c.components), "batch_size": c.batch_size, "seed": c.seed, "glasses": c.glasses}
    else:
        e = load_eval_config(path)
        parsed = {"name": e.name, "expertise": str(e.expertise.resolve().relative_to(CONFIGS.resolve().parent)),
                  "target": e.target, "grid": [dataclasses.asdict(g) for g in e.grid],
                  "blocks": {k: b.describe() for k, b in e.blocks.items()}, "fluency": e.fluency,
                  "defenses": e.defenses, "seed": e.seed}
    assert content_hash(parsed) == NEURONS[name]
