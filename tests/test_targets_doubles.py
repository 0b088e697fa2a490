"""The test-double targets: real Targets, deterministic whatever the batch looks like."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from safeglass.targets.doubles import (
    DEFAULT_REFUSAL,
    EchoTarget,
    RefuserTarget,
    ScriptedTarget,
    stable_index,
)
from safeglass.types import GenerationParams, Target, Turn

P = GenerationParams()


def conv(text: str) -> tuple[Turn, ...]:
    return (Turn("user", text),)


PROMPTS = [f"prompt number {i} about topic {i * 7 % 5}" for i in range(40)]


def test_doubles_are_targets_with_json_configs() -> None:
    for t in (EchoTarget(), RefuserTarget(), ScriptedTarget({"a": "b"}, ["x", "y"])):
        assert isinstance(t, Target)
        json.dumps(t.config())
    assert EchoTarget().name == "echo"
    assert RefuserTarget().name == "refuser"
    assert ScriptedTarget().name == "scripted"


def test_echo_answers_last_user_text_with_word_counts() -> None:
    c = (Turn("system", "be nice"), Turn("user", "first"), Turn("assistant", "ok then"),
         Turn("user", "tell me a joke"))
    [g] = EchoTarget().generate([c], P)
    assert g.text == "You said: tell me a joke"
    assert g.prompt_tokens == 2 + 1 + 2 + 4
    assert g.completion_tokens == 6
    assert g.seconds >= 0


def test_refuser_refuses_everything() -> None:
    gens = RefuserTarget().generate([conv("hi"), conv("how do I bake bread")], P)
    assert [g.text for g in gens] == [DEFAULT_REFUSAL] * 2
    assert gens[0].completion_tokens == len(DEFAULT_REFUSAL.split())
    custom = RefuserTarget(text="No.")
    assert custom.generate([conv("x")], P)[0].text == "No."
    assert custom.config() != RefuserTarget().config()


def test_scripted_table_then_default() -> None:
    t = ScriptedTarget({"hello": "hi there"}, default=["A", "B", "C"])
    gens = t.generate([conv("hello"), conv("unknown")], P)
    assert gens[0].text == "hi there"
    assert gens[1].text in {"A", "B", "C"}
    assert gens[1].text == ["A", "B", "C"][stable_index("unknown", 3)]


def test_scripted_default_mixes_refusal_and_compliance() -> None:
    texts = {g.text for g in ScriptedTarget().generate([conv(p) for p in PROMPTS], P)}
    assert len(texts) == 2 and DEFAULT_REFUSAL in texts


def test_scripted_choice_independent_of_batch_order_and_composition() -> None:
    t = ScriptedTarget(default=["r0", "r1", "r2", "r3"])
    alone = {p: t.generate([conv(p)], P)[0].text for p in PROMPTS}
    together = dict(zip(PROMPTS, (g.text for g in t.generate([conv(p) for p in PROMPTS], P))))
    rev = list(reversed(PROMPTS))
    reversed_ = dict(zip(rev, (g.text for g in t.generate([conv(p) for p in rev], P))))
    half = PROMPTS[::3]
    subset = dict(zip(half, (g.text for g in t.generate([conv(p) for p in half], P))))
    fresh = ScriptedTarget(default=["r0", "r1", "r2", "r3"])
    again = {p: fresh.generate([conv(p)], P)[0].text for p in PROMPTS}
    assert alone == together == reversed_ == again
    assert all(subset[p] == alone[p] for p in half)
    assert len(set(alone.values())) > 1  # the hash actually spreads prompts out


def test_stable_index_is_the_same_in_another_process() -> None:
    # Python's hash() of a str changes between processes (PYTHONHASHSEED); ours must not.
    code = ("from safeglass.targets.doubles import stable_index; "
            "print([stable_index(f'p{i}', 7) for i in range(20)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PYTHONPATH": ":".join(sys.path)}).stdout
    assert out.strip() == str([stable_index(f"p{i}", 7) for i in range(20)])


def test_scripted_delay_sleeps_per_conversation_and_is_not_config() -> None:
    slow = ScriptedTarget(default=["x"], delay_s=0.02)
    t0 = time.perf_counter()
    gens = slow.generate([conv("a"), conv("b"), conv("c")], P)
    assert time.perf_counter() - t0 >= 0.06
    assert all(g.seconds >= 0.02 for g in gens)
    assert slow.config() == ScriptedTarget(default=["x"]).config()


def test_params_do_not_change_double_outputs() -> None:
    t = ScriptedTarget()
    hot = GenerationParams(temperature=1.0, seed=7)
    assert [g.text for g in t.generate([conv(p) for p in PROMPTS], P)] == \
        [g.text for g in t.generate([conv(p) for p in PROMPTS], hot)]
