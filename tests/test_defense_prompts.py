"""Prompt defenses of the study (issue 30): AdaShield-S, RapGuard, ECSO, and the presets that name their chains."""

from __future__ import annotations

import json

import pytest

from safeglass.api import run
from safeglass.config import ConfigError, parse_config
from safeglass.defenses.caption_fallback import CAPTION_PROMPT, CHECK_PROMPT
from safeglass.defenses.context import DefenseContext
from safeglass.defenses.inspection_prompt import DEFAULT_INSPECTION_PROMPT, InspectionPrompt
from safeglass.defenses.presets import PRESETS
from safeglass.eval.plan import build_plan
from safeglass.eval.runner import STORE_NAME, build_component
from safeglass.eval.store import Store
from safeglass.registry import registry
from safeglass.targets.doubles import EchoTarget, ScriptedTarget, last_user_text
from safeglass.types import GenerationParams, ImageRef, Sample, Turn

JUDGE = "sgtest_components:CountingHarmJudge"  # harm iff the reply starts with "Sure"
REFUSAL = "I'm sorry, I can't help with that."


def config(defenses, targets=None, datasets=None, **extra):
    return {"name": "prompts", "seed": 1, "chunk_size": 4,
            "targets": targets or [{"name": "echo", "id": "echo"}],
            "datasets": datasets or [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": 4}}],
            "defenses": defenses, "judges": ["keyword-refusal"], **extra}


def rows_of(out):
    with Store(out / STORE_NAME) as s:
        return sorted(s.generations(), key=lambda r: r["sample_id"])


def trace_of(row):
    return json.loads(row["provenance"]).get("trace", [])


def picture(i: int = 0) -> ImageRef:
    from PIL import Image

    return ImageRef(Image.new("RGB", (8, 8), (40 * i, 90, 0)))


class Recording(EchoTarget):
    """Echo that records every conversation and the params it was sent."""

    def __init__(self):
        super().__init__(name="recording")
        self.calls = []

    def generate(self, conversations, params):
        self.calls.append((list(conversations), params))
        return super().generate(conversations, params)


def traced(defense, target, samples, params=None):
    """What a run does: a context, one batch, the replies and the per-sample traces."""
    params = params or GenerationParams()
    ctx = DefenseContext(target, build_component)
    defense.setup(ctx)
    ctx.begin(samples)
    return defense.generate(target, samples, params), ctx.traces


# --- AdaShield-S ----------------------------------------------------------------------------------------------------


def test_adashield_s_puts_request_prompt_request_in_the_user_turn_and_leaves_the_rest():
    sample = Sample("s", (Turn("system", "SYS"), Turn("user", "placeholder request", (picture(),))))
    target = Recording()
    InspectionPrompt().generate(target, [sample], GenerationParams())
    (conv,), _ = target.calls[0]
    assert conv[0] == Turn("system", "SYS")  # the system turn is not where AdaShield puts its text
    assert conv[1].text == f"placeholder request\n\n{DEFAULT_INSPECTION_PROMPT}\n\nplaceholder request"
    assert conv[1].images == sample.turns[1].images
    once = InspectionPrompt(repeat_query=False).prepare(sample.turns)
    assert once[1].text == f"placeholder request\n\n{DEFAULT_INSPECTION_PROMPT}"
    # a request entirely in the image: the prompt alone, not framed by empty copies
    assert InspectionPrompt().prepare((Turn("user", "", (picture(),)),))[0].text == DEFAULT_INSPECTION_PROMPT


def test_adashield_s_reads_its_prompt_from_a_file_and_keys_it_by_content(tmp_path):
    path = tmp_path / "shield.txt"
    path.write_text("  Check the picture first.\n", encoding="utf-8")
    d = registry("defenses").build("adashield-s", prompt_file=str(path))
    assert d.prepare((Turn("user", "q"),))[0].text == "q\n\nCheck the picture first.\n\nq"
    cfg = parse_config(config([{"name": "adashield-s", "args": {"prompt_file": str(path)}}]))
    before = {it.key for it in build_plan(cfg).items}
    path.write_text("Another text.", encoding="utf-8")
    assert before.isdisjoint({it.key for it in build_plan(cfg).items})


# --- RapGuard -------------------------------------------------------------------------------------------------------


def test_rapguard_makes_two_traced_calls_with_the_rationale_in_the_answers_system_prompt(tmp_path):
    run(config(["rapguard"]), out=tmp_path / "r", report=False, judge=False, progress=False)
    rows = rows_of(tmp_path / "r")
    assert len(rows) == 4
    for r in rows:
        trace = trace_of(r)
        assert [t["role"] for t in trace] == ["rationale", "model"]
        rationale, answer = trace
        assert [t["role"] for t in rationale["sent"]] == ["user"] and r["prompt"] in rationale["sent"][0]["text"]
        assert answer["sent"][0]["role"] == "system" and rationale["reply"] in answer["sent"][0]["text"]
        assert answer["sent"][-1]["text"] == r["prompt"] and r["response"] == answer["reply"]


def test_rapguard_caps_the_rationale_pass_and_sends_the_images_with_it():
    target = Recording()
    d = registry("defenses").build("rapguard", rationale_tokens=7, rationale_template="Risks of: {request}?",
                                   safety_template="Mind this: {rationale}")
    sample = Sample.from_text("s", "placeholder request", images=(picture(),))
    gens, traces = traced(d, target, [sample], GenerationParams(max_new_tokens=50))
    (ask,), ask_params = target.calls[0]
    (answer,), answer_params = target.calls[1]
    assert ask_params.max_new_tokens == 7 and answer_params.max_new_tokens == 50
    assert ask == (Turn("user", "Risks of: placeholder request?", sample.images),)
    assert answer[0].text == "Mind this: You said: Risks of: placeholder request?"
    assert len(traces[0]) == 2
    with pytest.raises(ValueError, match=r"\{request\}"):
        registry("defenses").build("rapguard", rationale_template="no placeholder")


# --- ECSO -----------------------------------------------------------------------------------------------------------


def scripted_pictures(**ecso_args):
    """Six samples (images on the even ones); the scripted model complies ("Sure") with samples 0, 1 and 2."""
    responses = {f"placeholder question {i}": f"Sure, placeholder answer {i}." for i in range(3)}
    return config([{"name": "ecso", "args": {"judge": JUDGE, **ecso_args}}],
                  targets=[{"name": "scripted", "id": "s", "args": {"responses": responses, "default": [REFUSAL]}}],
                  datasets=[{"name": "sgtest_components:load_pictures", "id": "pics"}])


def test_ecso_falls_back_only_on_unsafe_answers_and_answers_without_the_image(tmp_path):
    run(scripted_pictures(), out=tmp_path / "r", report=False, judge=False, progress=False)
    rows = {r["sample_id"]: r for r in rows_of(tmp_path / "r")}
    roles = {sid: [t["role"] for t in trace_of(r)] for sid, r in rows.items()}
    assert roles == {"pic-0": ["model", "harm check", "caption", "model"],   # image, unsafe
                     "pic-1": ["model", "harm check", "model"],              # no image, unsafe: no caption
                     "pic-2": ["model", "harm check", "caption", "model"],
                     "pic-3": ["model", "harm check"], "pic-4": ["model", "harm check"],
                     "pic-5": ["model", "harm check"]}
    for sid, r in rows.items():
        trace = trace_of(r)
        assert trace[1]["judge"] == JUDGE and trace[1]["flag"] == (sid in ("pic-0", "pic-1", "pic-2"))
        if len(trace) == 2:
            assert r["response"] == trace[0]["reply"] and not r["response"].startswith("Sure")
            continue
        final = trace[-1]
        assert all(t["images"] == [] for t in final["sent"])  # the image is absent from the final call
        assert r["response"] == final["reply"] == REFUSAL  # the fallback answer replaced the unsafe one
        assert r["prompt"] in final["sent"][-1]["text"]
    caption = trace_of(rows["pic-0"])[2]
    assert caption["sent"][0]["images"] and caption["sent"][0]["text"] == CAPTION_PROMPT.replace(
        "{request}", rows["pic-0"]["prompt"])
    assert caption["reply"] in trace_of(rows["pic-0"])[3]["sent"][-1]["text"]  # answered from the caption


def test_ecso_can_keep_unsafe_text_only_answers(tmp_path):
    run(scripted_pictures(text_only="keep"), out=tmp_path / "r", report=False, judge=False, progress=False)
    rows = {r["sample_id"]: r for r in rows_of(tmp_path / "r")}
    assert [t["role"] for t in trace_of(rows["pic-1"])] == ["model", "harm check"]
    assert rows["pic-1"]["response"] == "Sure, placeholder answer 1."
    assert trace_of(rows["pic-0"])[-1]["role"] == "model" and rows["pic-0"]["response"] == REFUSAL


class SaysYes(ScriptedTarget):
    """Complies with every request; asked whether a reply is harmful, answers `verdicts[request]`."""

    def __init__(self, verdicts):
        super().__init__(name="says-yes", default=["Sure, placeholder."])
        self.verdicts = verdicts

    def answer(self, conv):
        text = last_user_text(conv)
        for request, verdict in self.verdicts.items():
            if text == CHECK_PROMPT.replace("{request}", request).replace("{response}", "Sure, placeholder."):
                return verdict
        return super().answer(conv)


def test_ecso_asks_the_model_itself_and_takes_only_an_exact_yes():
    verdicts = {"a": " Yes. ", "b": "yes, it is", "c": "No", "d": "YES"}
    target = SaysYes(verdicts)
    samples = [Sample.from_text(k, k, images=(picture(),)) for k in verdicts]
    gens, traces = traced(registry("defenses").build("ecso"), target, samples)
    fell_back = [s.id for s, t in zip(samples, traces, strict=True) if "caption" in [e["role"] for e in t]]
    assert fell_back == ["a", "d"]  # "yes, it is" is not an exact yes, as in ECSO's code
    assert all(t[1]["role"] == "harm check" and t[1]["sent"][0]["images"] for t in traces)  # the image is shown
    assert [g.extra.get("ecso") for g in gens] == ["caption", None, None, "caption"]


def test_ecso_with_a_judge_keys_it_and_refuses_a_refusal_judge():
    from safeglass.eval.plan import defense_key

    assert "uses" not in defense_key(registry("defenses").build("ecso"))
    assert defense_key(registry("defenses").build("ecso", judge=JUDGE))["uses"][0]["name"] == JUDGE
    d = registry("defenses").build("ecso", judge="sgtest_components:PrefixRefusalJudge")
    with pytest.raises(ValueError, match="measures 'refusal'"):
        d.setup(DefenseContext(registry("targets").build("echo"), build_component))


class FlagsEverything:
    """A harm judge that calls every reply unsafe (so a random model's replies take ECSO's fallback)."""

    def __new__(cls):
        from safeglass.judges.base import Judge, Verdict

        class _Judge(Judge):
            name = "flags-everything"
            measure = "harm"

            def judge(self, items):
                return [Verdict(True, 1.0, "harm") for _ in items]

        return _Judge()


def test_ecso_end_to_end_on_a_tiny_llava_with_an_image(tmp_path):
    cfg = config([{"name": "ecso", "args": {"judge": "test_defense_prompts:FlagsEverything"}}],
                 targets=[{"name": "tiny", "id": "llava", "args": {"family": "llava"}}],
                 datasets=[{"name": "sgtest_components:load_pictures", "id": "pics", "args": {"n": 2}}],
                 generation={"max_new_tokens": 3})
    result = run(cfg, out=tmp_path / "r", report=False, judge=False, progress=False)
    assert result.failed == 0
    rows = {r["sample_id"]: r for r in rows_of(tmp_path / "r")}
    with_image, text_only = trace_of(rows["pic-0"]), trace_of(rows["pic-1"])
    assert [t["role"] for t in with_image] == ["model", "harm check", "caption", "model"]
    assert [t["role"] for t in text_only] == ["model", "harm check", "model"]
    assert with_image[0]["sent"][0]["images"] and with_image[2]["sent"][0]["images"]
    assert all(t["images"] == [] for t in with_image[3]["sent"])
    assert rows["pic-0"]["response"] == with_image[3]["reply"]
    assert with_image[2]["reply"] in with_image[3]["sent"][-1]["text"]  # answered from the caption


# --- presets --------------------------------------------------------------------------------------------------------


def keys(defenses, **kw):
    plan = build_plan(parse_config(config(defenses, **kw)))
    return {(it.defense, it.sample.id): it.key for it in plan.items}


def test_a_preset_and_the_same_chain_written_out_have_the_same_keys():
    preset = keys(["preset:S+A+R"])
    written = keys([{"id": "S+A+R", "chain": list(PRESETS["S+A+R"].steps)}])
    assert preset == written and len(preset) == 4
    assert PRESETS["S+A+R"].steps == ("rapguard", "safety_prompt", "adashield-s")
    # a one-step preset is its step, with its keys; the bare short name and an own id work too
    assert {s: k for (_, s), k in keys(["S"]).items()} == {s: k for (_, s), k in keys(["safety_prompt"]).items()}
    assert set(keys([{"preset": "S+A", "id": "mine"}])) == {("mine", f"unit-{i:04d}") for i in range(4)}
    same, swapped = ["safety_prompt", "adashield-s"], ["adashield-s", "safety_prompt"]
    assert set(keys(["S+A"]).values()) == set(keys([{"id": "x", "chain": same}]).values())
    assert set(keys(["S+A"]).values()).isdisjoint(keys([{"id": "x", "chain": swapped}]).values())  # order is keyed


def test_the_study_presets_are_six_and_none_stays_the_baseline():
    assert [p.name for p in PRESETS.values() if p.study] == ["none", "S", "A", "R", "S+A", "S+A+R"]
    cfg = parse_config(config(["none", "preset:S"], baseline_defense="none"))
    assert [(d.id, d.name) for d in cfg.defenses] == [("none", "none"), ("S", "chain")]


def test_preset_errors_name_the_problem(monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown defense preset 'S\+A\+Q' \(did you mean 'S\+A\+R'\?\)"):
        parse_config(config(["preset:S+A+Q"]))
    with pytest.raises(ConfigError, match="give 'preset' or 'name'"):
        parse_config(config([{"preset": "S", "name": "none"}]))
    with pytest.raises(ConfigError, match="takes no 'args'"):
        parse_config(config([{"name": "preset:S", "args": {"prompt": "x"}}]))
    # SmoothVLM comes from another module: until it is registered, presets that name it say so
    monkeypatch.delitem(registry("defenses")._entries, "smoothvlm", raising=False)
    with pytest.raises(ConfigError, match=r"preset 'A\+R\+SV' needs the defense\(s\) smoothvlm"):
        parse_config(config(["preset:A+R+SV"]))


def test_a_preset_chain_runs_each_step_where_it_belongs(tmp_path):
    run(config(["preset:S+A+R"], datasets=[{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": 2}}]),
        out=tmp_path / "r", report=False, judge=False, progress=False)
    for r in rows_of(tmp_path / "r"):
        rationale, answer = trace_of(r)
        # the rationale reads the request as it came, before any defense prompt is added
        assert rationale["role"] == "rationale" and DEFAULT_INSPECTION_PROMPT not in rationale["sent"][0]["text"]
        system, user = answer["sent"]
        assert system["text"].startswith("You are a helpful and harmless assistant")  # safety_prompt, then RapGuard
        assert rationale["reply"] in system["text"]
        assert user["text"] == f"{r['prompt']}\n\n{DEFAULT_INSPECTION_PROMPT}\n\n{r['prompt']}"


def test_list_presets(capsys):
    from safeglass.cli import main

    assert main(["list", "presets", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listed.keys() == PRESETS.keys() and listed["S+A"]["steps"] == ["safety_prompt", "adashield-s"]
    assert main(["list", "defenses", "--brief"]) == 0
    out = capsys.readouterr().out
    assert "rapguard" in out and "ecso" in out and "adashield-s" in out and "list presets" in out
