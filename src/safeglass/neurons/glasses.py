"""Glasses: the intervention artifact, a factor alpha in [0, 1] per neuron of each site, applied to
the site's input (see ``intervene``). Never above 1: methods.md records a public port whose 0.3
threshold amplified the neurons with AUROC in (0.3, 0.5]; here any alpha outside [0, 1] is an error.

Constructors from an Expertise: ``aura`` (AurA: 1 - Gini for every AUROC > 0.5), ``damp`` (top-k at a
fixed alpha), ``det0`` (top-k switched off) and ``sgm`` (expertise-weighted soft suppression).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.hashing import bytes_hash, content_hash
from safeglass.neurons.expertise import Expertise
from safeglass.neurons.recording import SiteSlice

GLASSES_TENSORS = "glasses.safetensors"
GLASSES_JSON = "glasses.json"
FORMAT = "safeglass-glasses/1"
METHODS = ("aura", "damp", "det0", "sgm")
CURVES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"linear": lambda g: g, "sqrt": np.sqrt, "square": np.square}


def _version() -> str:
    from safeglass.version import __version__

    return __version__


@dataclass
class Glasses:
    """Per-site alpha vectors (float32, the site's width) with the method that made them."""

    alphas: dict[str, np.ndarray]
    sites: tuple[SiteSlice, ...]
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sites = tuple(self.sites)
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate site names in {names}")
        extra = set(self.alphas) - set(names)
        if extra:
            raise ValueError(f"alphas for unknown site(s) {sorted(extra)}")
        fixed = {}
        for s in self.sites:
            if s.name not in self.alphas:
                raise ValueError(f"site {s.name}: no alpha vector")
            if s.hook != "pre":
                raise ValueError(f"site {s.name}: only input ('pre') sites can wear glasses, not {s.hook!r}")
            a = np.asarray(self.alphas[s.name], dtype=np.float32)
            if a.shape != (s.width,):
                raise ValueError(f"site {s.name}: alpha has shape {a.shape}, expected ({s.width},)")
            bad = ~np.isfinite(a) | (a < 0) | (a > 1)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise ValueError(f"site {s.name}: alpha[{j}] = {a[j]} is outside [0, 1]; glasses only dampen "
                                 "neurons, never amplify them")
            fixed[s.name] = a
        self.alphas = fixed

    # --- identity and summary ----------------------------------------------------------------------

    @property
    def hash(self) -> str:
        """Hash of what changes outputs (sites and alphas), not of method names or provenance."""
        alphas = {n: bytes_hash(np.ascontiguousarray(a).tobytes()) for n, a in self.alphas.items()}
        return content_hash({"sites": [[s.name, s.module_path, s.hook, s.width] for s in self.sites], "alphas": alphas})

    @property
    def n_neurons(self) -> int:
        return sum(s.width for s in self.sites)

    @property
    def n_dampened(self) -> int:
        return int(sum((a < 1).sum() for a in self.alphas.values()))

    def summary(self) -> dict[str, Any]:
        per_site = [{"site": s.name, "layer": s.layer, "component": s.component, "neurons": s.width,
                     "dampened": int((self.alphas[s.name] < 1).sum()),
                     "off": int((self.alphas[s.name] == 0).sum()),
                     "mean_alpha": float(self.alphas[s.name].mean())} for s in self.sites]
        return {"method": self.method, "params": self.params, "hash": self.hash, "neurons": self.n_neurons,
                "dampened": self.n_dampened, "per_site": per_site}

    # --- constructors ------------------------------------------------------------------------------

    @classmethod
    def aura(cls, expertise: Expertise, *, post_fusion_only: bool = True) -> Glasses:
        """AurA: alpha = 1 - Gini = 1 - 2 (AUROC - 0.5) for every neuron with AUROC > 0.5, else 1."""
        sites = _select(expertise, post_fusion_only, None)
        alphas = {}
        for s in sites:
            auc = expertise.site(s.name)
            alphas[s.name] = np.where(auc > 0.5, 1.0 - 2.0 * (auc - 0.5), 1.0)
        return cls._made(expertise, sites, alphas, "aura", {"threshold": 0.5, "post_fusion_only": post_fusion_only})

    @classmethod
    def damp(cls, expertise: Expertise, k: int, alpha: float, *, post_fusion_only: bool = True) -> Glasses:
        """The k neurons of highest AUROC (over all selected sites) scaled by a fixed ``alpha``."""
        _check_unit("alpha", alpha)
        sites = _select(expertise, post_fusion_only, None)
        alphas = _top_k(expertise, sites, k, float(alpha))
        return cls._made(expertise, sites, alphas, "damp",
                         {"k": int(k), "alpha": float(alpha), "post_fusion_only": post_fusion_only})

    @classmethod
    def det0(cls, expertise: Expertise, k: int, *, post_fusion_only: bool = True) -> Glasses:
        """The k neurons of highest AUROC switched off (alpha 0)."""
        sites = _select(expertise, post_fusion_only, None)
        alphas = _top_k(expertise, sites, k, 0.0)
        return cls._made(expertise, sites, alphas, "det0", {"k": int(k), "post_fusion_only": post_fusion_only})

    @classmethod
    def sgm(cls, expertise: Expertise, strength: float = 1.0, curve: str = "linear",
            layers: Sequence[int] | None = None, post_fusion_only: bool = True, min_auroc: float = 0.5) -> Glasses:
        """Expertise-weighted soft suppression: alpha = 1 - strength * w(2 (AUROC - 0.5)) for AUROC >
        ``min_auroc``, clipped to [0, 1]; w is the curve. A neuron with AUROC <= 0.5 has no expertise
        (w(0) = 0), so a ``min_auroc`` below 0.5 selects it without ever amplifying it."""
        if curve not in CURVES:
            raise ValueError(f"curve must be one of {', '.join(CURVES)}, not {curve!r}")
        if not np.isfinite(strength) or strength < 0:
            raise ValueError(f"strength must be >= 0 (a negative one would amplify), got {strength}")
        _check_unit("min_auroc", min_auroc)
        sites = _select(expertise, post_fusion_only, layers)
        alphas = {}
        for s in sites:
            auc = expertise.site(s.name)
            gini = np.clip(2.0 * (auc - 0.5), 0.0, 1.0)
            a = np.where(auc > min_auroc, 1.0 - strength * CURVES[curve](gini), 1.0)
            alphas[s.name] = np.clip(a, 0.0, 1.0)
        params = {"strength": float(strength), "curve": curve, "layers": sorted(int(x) for x in layers)
                  if layers is not None else None, "post_fusion_only": post_fusion_only, "min_auroc": float(min_auroc)}
        return cls._made(expertise, sites, alphas, "sgm", params)

    @classmethod
    def from_expertise(cls, expertise: Expertise, method: str = "sgm", **params: Any) -> Glasses:
        """Dispatch by method name (aura, damp, det0, sgm); unused parameters are an error."""
        params = {k: v for k, v in params.items() if v is not None}
        check_params(method, params)
        return getattr(cls, method)(expertise, **params)

    @classmethod
    def _made(cls, expertise: Expertise, sites: Sequence[SiteSlice], alphas: dict[str, np.ndarray], method: str,
              params: dict[str, Any]) -> Glasses:
        prov = {**expertise.provenance, "expertise_hash": expertise.hash, "safeglass_version": _version()}
        return cls({k: v.astype(np.float32) for k, v in alphas.items()}, tuple(sites), method, params, prov)

    # --- files -------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """glasses.safetensors (alphas by site name) and glasses.json (method, params, sites, provenance, hash)."""
        from safetensors.numpy import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({n: np.ascontiguousarray(a) for n, a in self.alphas.items()}, str(d / GLASSES_TENSORS),
                  metadata={"format": FORMAT, "hash": self.hash})
        doc = {"format": FORMAT, "hash": self.hash, "method": self.method, "params": self.params,
               "sites": [s.to_dict() for s in self.sites], "provenance": self.provenance,
               "summary": {k: v for k, v in self.summary().items() if k not in ("params", "per_site", "method")}}
        (d / GLASSES_JSON).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str), encoding="utf-8")
        return d

    @classmethod
    def load(cls, path: str | Path) -> Glasses:
        """From a glasses folder (or its glasses.json); the recorded content hash must match."""
        from safetensors.numpy import load_file

        d = Path(path)
        if d.name == GLASSES_JSON:
            d = d.parent
        meta_path, tensor_path = d / GLASSES_JSON, d / GLASSES_TENSORS
        for p in (meta_path, tensor_path):
            if not p.is_file():
                raise FileNotFoundError(f"{d}: no {p.name} here; is this a glasses folder (`neurons apply --out`)?")
        try:
            doc = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{meta_path}: invalid JSON: {exc}") from None
        if doc.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {doc.get('format')!r}, expected {FORMAT!r}")
        try:
            glasses = cls(load_file(str(tensor_path)), tuple(SiteSlice.from_dict(s) for s in doc["sites"]),
                          doc["method"], doc.get("params") or {}, doc.get("provenance") or {})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{meta_path}: missing or malformed field {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{d}: {exc}") from None
        if doc.get("hash") != glasses.hash:
            raise ValueError(f"{d}: content hash {glasses.hash} does not match the recorded {doc.get('hash')}; "
                             "the files were changed after saving")
        return glasses


def check_params(method: str, params: dict[str, Any]) -> None:
    """Unknown methods and parameters a method does not take are errors, named."""
    import inspect

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    sig = inspect.signature(getattr(Glasses, method))
    accepted = [p for p in sig.parameters if p != "expertise"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"method {method} takes {', '.join(accepted)}; not {', '.join(unknown)}")
    missing = [p.name for p in sig.parameters.values()
               if p.default is inspect.Parameter.empty and p.name != "expertise" and p.name not in params]
    if missing:
        raise ValueError(f"method {method} needs {', '.join(missing)}")


def _check_unit(name: str, value: float) -> None:
    if not (np.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def _select(expertise: Expertise, post_fusion_only: bool, layers: Sequence[int] | None) -> list[SiteSlice]:
    """The sites glasses act on: language-model sites only when ``post_fusion_only`` (the neurons
    after vision-text fusion), and only the given LM layers when ``layers`` is set."""
    sites = [s for s in expertise.layout if s.component == "language_model" or not post_fusion_only]
    if layers is not None:
        wanted = {int(x) for x in layers}
        have = {s.layer for s in sites if s.component == "language_model"}
        if wanted - have:
            raise ValueError(f"layers {sorted(wanted - have)} are not among the LM layers {sorted(have)}")
        sites = [s for s in sites if s.component != "language_model" or s.layer in wanted]
    if not sites:
        raise ValueError("no sites selected: the expertise has no language-model sites "
                         "(record components=['language_model'], or pass post_fusion_only=False)")
    return sites


def _top_k(expertise: Expertise, sites: Sequence[SiteSlice], k: int, alpha: float) -> dict[str, np.ndarray]:
    auc = np.concatenate([expertise.site(s.name) for s in sites])
    if not isinstance(k, int | np.integer) or not 0 <= k <= auc.shape[0]:
        raise ValueError(f"k must be an integer in 0..{auc.shape[0]} (the selected neurons), got {k!r}")
    flat = np.ones(auc.shape[0])
    flat[np.argsort(-auc, kind="stable")[:k]] = alpha  # ties go to the earlier layer
    out, offset = {}, 0
    for s in sites:
        out[s.name] = flat[offset:offset + s.width]
        offset += s.width
    return out
