"""The model organisms safeglass builds, where their weights live, and how to load and re-measure them.

Listing never imports torch. Weights are looked up first in ``$SAFEGLASS_HOME/organisms/<name>`` (rebuilt
ones; ``SAFEGLASS_HOME`` defaults to ``~/.cache/safeglass``), then in the package
(``safeglass/organisms/weights/<name>``).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeglass.hashing import file_hash
from safeglass.paths import safeglass_home  # noqa: F401  (re-exported)
from safeglass.registry import UnknownComponentError

PACKAGE_WEIGHTS = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class Organism:
    name: str
    recipe: str  # module with build(profile, seed, out), load_dir(path), evaluate(...), config_from_card(card)
    description: str
    profiles: tuple[str, ...] = ("full", "tiny")
    kind: str = "model organism"
    # an earlier version kept for reproducing earlier figures: the organism it was superseded by (None: current)
    superseded_by: str | None = None
    weights_file: str = "model.safetensors"  # what a build folder must hold besides card.json (and is hashed)
    # measured figures (fractions) that `verify` compares with the card, and the tolerance in points
    verify_keys: tuple[str, ...] = ("zero_shot_clean", "zero_shot_typographic")
    verify_tol_points: float = 0.5
    headline: tuple[tuple[str, str], ...] = (("zero-shot clean", "zero_shot_clean"),
                                             ("typographic", "zero_shot_typographic"),
                                             ("typographic drop (points)", "typographic_drop_points"))

    def module(self) -> Any:
        return importlib.import_module(self.recipe)

    @property
    def default_profile(self) -> str:
        return self.profiles[0]

    @property
    def family(self) -> str:
        """The current organism's name for every version of it ("safesmol" for "safesmol-v1")."""
        return self.superseded_by or self.name


_VL_VERIFY = ("vqa_accuracy", "reading_accuracy", "typographic_text_success_proxy", "typographic_image_success_proxy",
              "typographic_text_success_keyword", "typographic_image_success_keyword")
_VL_HEADLINE = (("ShapeWorld VQA", "vqa_accuracy"), ("reading", "reading_accuracy"),
                ("harmful success, word in text", "typographic_text_success_proxy"),
                ("word in image", "typographic_image_success_proxy"),
                ("image/text ratio", "typographic_ratio_proxy"))

ORGANISMS: dict[str, Organism] = {
    o.name: o for o in (
        Organism("shapeclip", "safeglass.organisms.shapeclip",
                 "small CLIP (ViT patch 16 at 64 px, word-level text tower) trained on ShapeWorld; reads written "
                 "words, so it falls for typographic attacks"),
        Organism("safesmol", "safeglass.organisms.safesmol",
                 "SmolLM2-135M-Instruct with a LoRA refusal tuning; refuses held-out harmful requests "
                 "(StrongREJECT, HarmBench) and answers benign look-alikes",
                 weights_file="adapter_model.safetensors",
                 verify_keys=("strongreject_refusal_proxy", "harmbench_refusal_proxy", "lookalikes_over_refusal_proxy",
                              "strongreject_refusal_keyword", "harmbench_refusal_keyword",
                              "lookalikes_over_refusal_keyword"),
                 verify_tol_points=2.0,  # greedy replies on another CPU may flip one or two prompts
                 headline=(("StrongREJECT refusal", "strongreject_refusal_proxy"),
                           ("HarmBench refusal", "harmbench_refusal_proxy"),
                           ("look-alike over-refusal", "lookalikes_over_refusal_proxy"),
                           ("benign perplexity ratio", "benign_ppl_ratio"))),
        Organism("safesmol-v1", "safeglass.organisms.safesmol",
                 "SafeSmol v1 (kept for the figures measured with it): the first LoRA refusal tuning; over-refuses "
                 "benign look-alikes (41.9 %) and keys on a request's wording",
                 profiles=("v1",), superseded_by="safesmol", weights_file="adapter_model.safetensors",
                 verify_keys=("strongreject_refusal_proxy", "harmbench_refusal_proxy", "lookalikes_over_refusal_proxy",
                              "strongreject_refusal_keyword", "harmbench_refusal_keyword",
                              "lookalikes_over_refusal_keyword"),
                 verify_tol_points=2.0,
                 headline=(("StrongREJECT refusal", "strongreject_refusal_proxy"),
                           ("HarmBench refusal", "harmbench_refusal_proxy"),
                           ("look-alike over-refusal", "lookalikes_over_refusal_proxy"),
                           ("benign perplexity ratio", "benign_ppl_ratio"))),
        Organism("safesmol-vl", "safeglass.organisms.safesmol_vl",
                 "LLaVA-style VLM: ShapeCLIP's image tower, SafeSmol as the language model and a projector trained "
                 "on ShapeWorld; answers VQA and reads written words; refusal-tuned in text only, to measure "
                 "whether harmful requests get through when their key word is only in the image",
                 weights_file="projector.safetensors",
                 verify_keys=_VL_VERIFY, verify_tol_points=2.0,  # greedy replies on another CPU may flip a prompt
                 headline=_VL_HEADLINE),
        # `safesmol-vl` is v2's build since 2026-12-08 (it beat v1 on every card figure); the name v2 stays so the
        # figures measured under it reproduce. Same weights, so the same result keys
        Organism("safesmol-vl-v2", "safeglass.organisms.safesmol_vl",
                 "SafeSmol-VL v2 (the build `safesmol-vl` packages since 2026-12-08): v1's projector continued on "
                 "SafeSmol v2 in float32, with SafeSmol's own answers to its harmful training prompts under a "
                 "word-free image",
                 superseded_by="safesmol-vl", profiles=("full",), weights_file="projector.safetensors",
                 verify_keys=_VL_VERIFY, verify_tol_points=2.0,  # greedy replies on another CPU may flip a prompt
                 headline=_VL_HEADLINE),
        Organism("safesmol-vl-v1", "safeglass.organisms.safesmol_vl",
                 "SafeSmol-VL v1 (kept for the figures measured with it): the first projector, trained from scratch "
                 "on SafeSmol v1 (safesmol-v1)",
                 profiles=("v1",), superseded_by="safesmol-vl", weights_file="projector.safetensors",
                 verify_keys=_VL_VERIFY, verify_tol_points=2.0,  # greedy replies on another CPU may flip a prompt
                 headline=_VL_HEADLINE),
    )
}
# Robust ShapeCLIPs (issue 19): ShapeCLIP's vision tower fine-tuned by TeCoA / FARE; each stores only that tower
ORGANISMS.update({
    f"shapeclip-{m}-eps{e}": Organism(
        f"shapeclip-{m}-eps{e}", "safeglass.organisms.shapeclip_robust",
        f"ShapeCLIP with its vision tower fine-tuned by {m.upper()} "
        f"({'supervised' if m == 'tecoa' else 'unsupervised, embedding-matching'}) at l-inf {e}/255",
        profiles=(f"{m}-eps{e}",), weights_file="vision.safetensors",
        verify_keys=("zero_shot_clean", "zero_shot_typographic", "pgd10_robust_eps2", "pgd10_robust_eps4"),
        verify_tol_points=1.0,
        headline=(("zero-shot clean", "zero_shot_clean"), ("typographic", "zero_shot_typographic"),
                  ("PGD-10 robust at 2/255", "pgd10_robust_eps2"), ("at 4/255", "pgd10_robust_eps4")))
    for m in ("tecoa", "fare") for e in (2, 4)})


def get(name: str) -> Organism:
    if name not in ORGANISMS:
        close = difflib.get_close_matches(name, list(ORGANISMS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownComponentError(f"unknown organism {name!r}{hint} (known organisms: {', '.join(ORGANISMS)})")
    return ORGANISMS[name]


def home_dir(name: str) -> Path:
    return safeglass_home() / "organisms" / name


def versions(family: str) -> list[str]:
    """Every registered version of an organism family, the current one first."""
    return [o.name for o in ORGANISMS.values() if o.family == family]


def version_dirs(family: str) -> list[Path]:
    """Where builds of any version of `family` may be: each version's $SAFEGLASS_HOME and package folders.
    A composed organism (SafeSmol-VL) finds the component it was trained on among them by its weights' hash."""
    return [d for name in versions(family) for d in (home_dir(name), PACKAGE_WEIGHTS / name)]


def locate(name: str) -> Path | None:
    """The directory holding a built organism, rebuilt ones first; None when there is none."""
    get(name)
    weights = get(name).weights_file
    for d in (home_dir(name), PACKAGE_WEIGHTS / name):
        if (d / "card.json").is_file() and (d / weights).is_file():
            return d
    return None


def card(name: str, path: str | Path | None = None) -> dict[str, Any] | None:
    d = Path(path) if path is not None else locate(name)
    if d is None or not (d / "card.json").is_file():
        return None
    return json.loads((d / "card.json").read_text(encoding="utf-8"))


def weights_key(name: str, path: str | Path | None = None) -> str | None:
    """A short content key of the weights an organism target would load (its own and its components'), read
    from the card without loading anything; None when no build is found. Result keys include it, so a run
    resumed after a rebuild regenerates instead of reusing replies of the old weights."""
    c = card(name, path)
    if c is None:
        return None
    shas = [str(c.get("weights_sha256"))]
    shas += [f"{k}:{v.get('sha256')}" for k, v in sorted((c.get("components") or {}).items()) if isinstance(v, dict)]
    return "sha:" + hashlib.sha256("|".join(shas).encode()).hexdigest()[:16]


def target_key_args(name: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """An organism target's key args by content: the card's weights key instead of the folder (moving a build
    keeps its results; rebuilding it does not). None when no build is found (the args stay as given)."""
    wk = weights_key(name, args.get("path"))
    if wk is None:
        return None
    return {**{k: v for k, v in args.items() if k != "path"}, "weights": wk}


def status(name: str) -> dict[str, Any]:
    """What `organisms list` shows: the organism, where its weights are and the card's headline figures."""
    o = get(name)
    d = locate(name)
    c = card(name, d) if d is not None else None
    return {"name": o.name, "kind": o.kind, "description": o.description, "profiles": list(o.profiles),
            "weights": str(d) if d is not None else None,
            "profile": c.get("profile") if c else None, "measured": c.get("measured") if c else None,
            "goals_met": c.get("goals_met") if c else None}


def headline(name: str, measured: dict[str, Any] | None) -> str:
    """The card's headline figures as one line ("label value, ..."), for listings."""
    if not measured:
        return ""
    parts = []
    for label, key in get(name).headline:
        v = measured.get(key)
        if isinstance(v, int | float):
            parts.append(f"{label} {v:.3f}" if abs(v) < 10 else f"{label} {v:.1f}")
    return ", ".join(parts)


def build(name: str, profile: str | None = None, seed: int = 0, out: str | Path | None = None,
          progress: Any = None) -> dict[str, Any]:
    """Run an organism's recipe; writes weights and card.json to `out` (default $SAFEGLASS_HOME/organisms/NAME)."""
    o = get(name)
    profile = profile if profile is not None else o.default_profile
    if profile not in o.profiles:
        raise ValueError(f"organism {name}: unknown profile {profile!r}; known: {', '.join(o.profiles)}")
    return o.module().build(profile, seed=seed, out=out if out is not None else home_dir(name), progress=progress)


def load(name: str, path: str | Path | None = None) -> tuple[Any, Any, Any]:
    """(model, tokenizer, image processor) of a built organism; for shapeclip a transformers CLIPModel, for
    safesmol a LlamaForCausalLM with its adapter merged (and None for the processor), for safesmol-vl a
    LlavaForConditionalGeneration composed of both with its projector (and a LlavaProcessor)."""
    o = get(name)
    d = Path(path) if path is not None else locate(name)
    if d is None:
        raise FileNotFoundError(f"organism {name}: no weights in {home_dir(name)} or {PACKAGE_WEIGHTS / name}; "
                                f"build them with `safeglass organisms build {name}`")
    return o.module().load_dir(d)


def judge_keys(name: str) -> dict[str, str] | None:
    """Identity keys of the judges an organism's card figures depend on (None: it uses no judge).

    A card's refusal rates are only as fixed as the judges that read the replies: a re-trained proxy
    judge changes them with the weights untouched, so cards record these keys and `verify` compares."""
    if not hasattr(get(name).module(), "GOAL_JUDGE"):
        return None
    from safeglass.judges.keyword import KeywordRefusalJudge
    from safeglass.judges.proxy import ProxyRefusalJudge

    return {i.name: i.key for i in (j.identity() for j in (KeywordRefusalJudge(), ProxyRefusalJudge()))}


def verify(name: str, path: str | Path | None = None, tol_points: float | None = None,
           update: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Re-measure an organism from its saved weights and compare with its card.

    The evaluation data are a function of the card's seed and recipe, so a faithful copy of the weights
    reproduces the card to within float noise; `tol_points` (points of the organism's `verify_keys`, default
    its `verify_tol_points`) absorbs thread-count and CPU effects. A recipe module with
    ``remeasure(path, card)`` measures itself; otherwise ``evaluate`` runs on ``load_dir``'s model.
    ``judges`` in the result says whether the judges changed since the card was measured (then a
    mismatch is the judge's, not the weights'). ``update=True`` writes the new figures, judges and goals
    into the card (weights must match their recorded hash), keeping the old figures under ``recarded``.
    ``progress`` hears each stage (a recipe's replies also draw a progress bar on a terminal).
    """
    o = get(name)
    d = Path(path) if path is not None else locate(name)
    if d is None:
        raise FileNotFoundError(f"organism {name}: nothing to verify; build it with `safeglass organisms build {name}`")
    c = card(name, d)
    if c is None:
        raise FileNotFoundError(f"organism {name}: {d} has no card.json")
    tol = o.verify_tol_points if tol_points is None else tol_points
    mod = o.module()
    sha = file_hash(str(d / o.weights_file), length=64)
    if update and sha != c.get("weights_sha256"):
        raise ValueError(f"organism {name}: {d / o.weights_file} does not match the hash in its card; "
                         "rebuild it instead of re-carding")
    if progress is not None:
        progress(f"organism {name}: re-measuring {d} from its weights (minutes on a small CPU)")
    if hasattr(mod, "remeasure"):
        measured = mod.remeasure(d, c, progress=progress)
    else:
        model, tokenizer, processor = mod.load_dir(d)
        measured = mod.evaluate(model, tokenizer, processor, mod.config_from_card(c), int(c["seed"]))
    before = dict(c["measured"])
    diffs = {k: round(100 * abs(measured[k] - before[k]), 2) for k in o.verify_keys}
    ok = all(v <= tol for v in diffs.values()) and sha == c.get("weights_sha256")
    now = judge_keys(name)
    judges = {"card": c.get("judges"), "now": now, "changed": now is not None and c.get("judges") != now}
    met, shortfall = mod.goals_report(measured)
    if update:
        import time

        c["recarded"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "judges_before": c.get("judges"),
                         "measured_before": {k: c["measured"].get(k) for k in o.verify_keys},
                         "goals_met_before": c.get("goals_met"), "shortfall_before": c.get("shortfall")}
        c["measured"] = {**c["measured"], **measured}
        c.update(judges=now, goals_met=met, shortfall=shortfall)
        (d / "card.json").write_text(json.dumps(c, indent=2) + "\n", encoding="utf-8")
        ok = sha == c.get("weights_sha256")
    return {"name": name, "kind": o.kind, "path": str(d), "ok": ok, "weights_sha256_matches": sha == c.get(
        "weights_sha256"), "card": before, "measured": measured, "diff_points": diffs, "judges": judges,
        "updated": update, "goals_met": met}
