"""Named defense chains for the configurations of the inference-time defense study (arXiv 2606.10904): ``none``,
the safety prompt (S), AdaShield-S (A), RapGuard (R), SmoothVLM (SV) and their combinations, and AdaShield-A
(A-adaptive) in A's place.

In a run config ``defenses: [preset:S+A+R]`` (or the bare name, ``S+A+R``, when no defense is registered under it)
is the chain the preset names, with the preset's name as its id; ``{preset: S+A+R, id: mine}`` gives another id.
A preset and the same chain written out have the same result keys. ``safeglass list presets`` prints them.

Steps are in the order they act (the first sees the request first): RapGuard reads the request as it came, so its
rationale is about the user's request and not about the defense prompts the other steps add; the safety prompt
(system turn) and AdaShield's prompt (user turn) come next; SmoothVLM is innermost, so every perturbed copy carries
every prompt and the rationale is written once per sample, not once per copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from safeglass.schema import did_you_mean

PREFIX = "preset:"


@dataclass(frozen=True)
class Preset:
    name: str
    steps: tuple[str, ...]   # registry names, in chain order
    description: str
    study: bool = False      # one of the study's six configurations


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("none", ("none",), "no defense (the baseline)", study=True),
    Preset("S", ("safety_prompt",), "a safety system prompt", study=True),
    Preset("A", ("adashield-s",), "AdaShield-S: inspect the image and text first (user turn)", study=True),
    Preset("R", ("rapguard",), "RapGuard: a rationale on the risks, then a safety prompt built from it",
           study=True),
    Preset("S+A", ("safety_prompt", "adashield-s"), "safety prompt and AdaShield-S", study=True),
    Preset("S+A+R", ("rapguard", "safety_prompt", "adashield-s"), "safety prompt, AdaShield-S and RapGuard",
           study=True),
    Preset("SV", ("smoothvlm",), "SmoothVLM: perturbed copies of the image, majority vote"),
    Preset("A+R+SV", ("rapguard", "adashield-s", "smoothvlm"), "AdaShield-S, RapGuard and SmoothVLM"),
    Preset("S+A+R+SV", ("rapguard", "safety_prompt", "adashield-s", "smoothvlm"),
           "safety prompt, AdaShield-S, RapGuard and SmoothVLM"),
    # AdaShield's adaptive variant in A's place: its pool is trained on the defended model at generation time
    Preset("A-adaptive", ("adashield-a",), "AdaShield-A: a pooled defense prompt, retrieved per request, above a "
           "similarity threshold"),
    Preset("S+A-adaptive+R", ("rapguard", "safety_prompt", "adashield-a"),
           "safety prompt, AdaShield-A and RapGuard"),
)}


def preset_name(value: str) -> str | None:
    """The preset a defense entry's name asks for: ``preset:NAME``, or a bare preset name that no registered
    defense takes (a registered name is always the component: ``none`` stays the ``none`` defense)."""
    from safeglass.registry import registry

    if value.startswith(PREFIX):
        return value[len(PREFIX):]
    if value in PRESETS and value not in registry("defenses"):
        return value
    return None


def preset_steps(name: str) -> list[str]:
    """The chain a preset names, checked: an unknown preset, or one whose defenses are not all registered in this
    installation, is a ValueError saying which."""
    from safeglass.registry import registry

    preset = PRESETS.get(name)
    if preset is None:
        raise ValueError(f"unknown defense preset {name!r}{did_you_mean(name, list(PRESETS))}; known: "
                         f"{', '.join(PRESETS)}")
    missing = [s for s in preset.steps if s not in registry("defenses")]
    if missing:
        raise ValueError(f"defense preset {name!r} needs the defense(s) {', '.join(missing)}, which this installation "
                         f"does not register; use a preset without {' or '.join(missing)} or install a safeglass "
                         "that has it")
    return list(preset.steps)
