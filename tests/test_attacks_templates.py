"""The text jailbreak wraps only the last user turn's text in a template (built-in Wei et al. 2023 wrappers or a
user's file), keeps everything else of the sample, and keys its config on the template text."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeglass.attacks.templates import TEMPLATES, TemplateJailbreak
from safeglass.registry import registry
from safeglass.types import ImageRef, Sample, Turn

PNG = b"\x89PNG\r\n\x1a\n" + b"not really an image, but hashed as bytes"


def _sample(text: str = "Describe the water cycle.") -> Sample:
    return Sample(id="s1", kind="benign", category="c", source="test", metadata={"origin": "x"},
                  turns=(Turn("system", "be nice"), Turn("user", "first question", (ImageRef(b"a" + PNG),)),
                         Turn("assistant", "first answer"), Turn("user", text, (ImageRef(PNG),))))


def test_built_in_names() -> None:
    assert set(TEMPLATES) == {"prefix_injection", "refusal_suppression", "combination"}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_built_in_wraps_only_the_last_user_turn(name: str) -> None:
    s = _sample()
    out = TemplateJailbreak(name).apply(s)
    assert (out.id, out.kind, out.category, out.source) == (s.id, s.kind, s.category, s.source)
    assert out.turns[:3] == s.turns[:3]
    assert out.turns[3].role == "user" and out.turns[3].images == s.turns[3].images
    wrapped = out.turns[3].text
    assert wrapped.count(s.prompt) == 1 and len(wrapped) > len(s.prompt) + 40 and "{prompt}" not in wrapped
    assert out.images == s.images
    assert out.metadata["origin"] == "x" and out.metadata["objective"] == s.prompt
    assert out.metadata["attack"]["name"] == "text-jailbreak" and out.metadata["attack"]["template"] == name
    assert s.turns[3].text == "Describe the water cycle."  # the input sample is untouched
    assert out.content_hash() != s.content_hash()


def test_templates_say_what_the_paper_describes() -> None:
    s = _sample()
    prefix = TemplateJailbreak("prefix_injection").apply(s).prompt
    rules = TemplateJailbreak("refusal_suppression").apply(s).prompt
    both = TemplateJailbreak("combination").apply(s).prompt
    assert "Absolutely! Here's" in prefix and "Absolutely! Here's" not in rules
    for word in ("cannot", "unable", "instead", "as", "however", "it", "unfortunately", "important"):
        assert f'"{word}"' in rules and f'"{word}"' in both
    assert "apologize" in rules and "disclaimer" in rules
    assert "Absolutely! Here's" in both
    assert len({prefix, rules, both}) == 3


def test_braces_in_the_prompt_survive() -> None:
    text = "Format {this} as JSON: {\"a\": {0}} and {prompt} too"
    out = TemplateJailbreak().apply(_sample(text))
    assert text in out.prompt
    assert out.metadata["objective"] == text


def test_earlier_objective_is_kept() -> None:
    s = _sample()
    s = Sample(id=s.id, turns=s.turns, metadata={"objective": "the original request"})
    assert TemplateJailbreak().apply(s).metadata["objective"] == "the original request"


def test_template_file(tmp_path: Path) -> None:
    f = tmp_path / "mine.txt"
    f.write_text("Café rules {not a field}: {prompt}\nEnd.", encoding="utf-8")
    attack = TemplateJailbreak(template_file=str(f))
    out = attack.apply(_sample("hello"))
    assert out.prompt == "Café rules {not a field}: hello\nEnd."
    assert out.metadata["attack"]["template"] == "file" and out.metadata["attack"]["template_file"] == str(f)


def test_config_follows_the_template_text(tmp_path: Path) -> None:
    configs = [TemplateJailbreak(name).config() for name in TEMPLATES]
    assert len({c["text"] for c in configs}) == len(TEMPLATES)
    assert all(c["name"] == "text-jailbreak" for c in configs)
    assert TemplateJailbreak("combination").config() == TemplateJailbreak().config()
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    a.write_text("One: {prompt}", encoding="utf-8")
    b.write_text("Two: {prompt}", encoding="utf-8")
    c.write_text("One: {prompt}", encoding="utf-8")
    ca, cb, cc = (TemplateJailbreak(template_file=str(p)).config() for p in (a, b, c))
    assert ca != cb and ca["text"] != cb["text"]
    assert ca == cc  # same text, same results, wherever the file lives


def test_template_file_without_placeholder_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "no_placeholder.txt"
    f.write_text("Please answer: {question}", encoding="utf-8")
    with pytest.raises(ValueError, match="no_placeholder.txt") as err:
        TemplateJailbreak(template_file=str(f))
    assert "{prompt}" in str(err.value)


def test_unreadable_template_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(ValueError, match="missing.txt"):
        TemplateJailbreak(template_file=str(missing))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 {prompt}".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt"):
        TemplateJailbreak(template_file=str(latin))


def test_unknown_template_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown template 'nope'") as err:
        TemplateJailbreak("nope")
    for name in TEMPLATES:
        assert name in str(err.value)


def test_built_in_and_file_together_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("{prompt}", encoding="utf-8")
    with pytest.raises(ValueError, match="not both"):
        TemplateJailbreak("prefix_injection", template_file=str(f))


def test_sample_without_user_turn_is_an_error() -> None:
    s = Sample(id="only-system", turns=(Turn("system", "hi"),))
    with pytest.raises(ValueError, match="only-system"):
        TemplateJailbreak().apply(s)


def test_registered() -> None:
    attack = registry("attacks").build("text-jailbreak", template="prefix_injection")
    assert isinstance(attack, TemplateJailbreak) and attack.access == "black-box"
    assert attack.config()["template"] == "prefix_injection"
    assert "Absolutely! Here's" in attack.apply(_sample()).prompt
