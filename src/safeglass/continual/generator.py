"""A small class-conditional VAE: the synthetic source that contaminates the streams.

Trained here on the training split only (never on a test image), so a synthetic image carries no test
information. The digits generator ships as `weights/cvae-digits.safetensors` with its card
(`weights/cvae-digits.json`); any other source (ShapeWorld, a folder) trains one on the fly, deterministic by seed
(seconds on a CPU). Samples are the decoder's mean image for z ~ N(0, temperature^2 I): smooth, prototypical images,
as generated images are to a classifier (lower entropy than real ones, ESRM's observation).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

WEIGHTS = Path(__file__).resolve().parent / "weights"
PACKAGED = {"digits": "cvae-digits"}


class CVAE(nn.Module):
    """Encoder q(z | x, c) and decoder p(x | z, c), one hidden layer each; images flattened in [0, 1]."""

    def __init__(self, dim: int, n_classes: int, hidden: int = 256, latent: int = 8) -> None:
        super().__init__()
        self.dim, self.n_classes, self.hidden, self.latent = dim, n_classes, hidden, latent
        self.enc = nn.Sequential(nn.Linear(dim + n_classes, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent + n_classes, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = F.one_hot(y, self.n_classes).float()
        mu, logvar = self.enc(torch.cat([x, c], 1)).chunk(2, 1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.dec(torch.cat([z, c], 1)), mu, logvar

    @torch.no_grad()
    def sample(self, cls: int, n: int, seed: int, temperature: float = 1.0) -> np.ndarray:
        g = torch.Generator().manual_seed(int(seed))
        z = torch.randn(n, self.latent, generator=g) * temperature
        c = F.one_hot(torch.full((n,), int(cls)), self.n_classes).float()
        return torch.sigmoid(self.dec(torch.cat([z, c], 1))).numpy().astype(np.float32)


def elbo_loss(model: CVAE, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    logits, mu, logvar = model(x, y)
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
    return rec + beta * kl


def train_cvae(x: np.ndarray, y: np.ndarray, n_classes: int, *, epochs: int = 150, seed: int = 0,
               hidden: int = 256, latent: int = 8, lr: float = 2e-3, batch_size: int = 64) -> tuple[CVAE, dict]:
    """A CVAE fitted on (x, y); returns it and its training record (final loss per image, seconds)."""
    torch.manual_seed(seed)
    model = CVAE(x.shape[1], n_classes, hidden, latent)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64))
    rng = np.random.default_rng(seed)
    t0, last = time.perf_counter(), float("nan")
    for _ in range(epochs):
        perm = torch.from_numpy(rng.permutation(len(yt)))
        total = 0.0
        for i in range(0, len(perm), batch_size):
            b = perm[i:i + batch_size]
            loss = elbo_loss(model, xt[b], yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        last = total / len(yt)
    model.eval()
    return model, {"epochs": epochs, "seed": seed, "hidden": hidden, "latent": latent, "lr": lr,
                   "batch_size": batch_size, "final_loss_per_image": round(last, 4),
                   "seconds": round(time.perf_counter() - t0, 2), "n_train": int(len(yt))}


def save(model: CVAE, card: dict[str, Any], name: str, folder: Path = WEIGHTS) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / f"{name}.safetensors"))
    arch = {"dim": model.dim, "n_classes": model.n_classes, "hidden": model.hidden, "latent": model.latent}
    (folder / f"{name}.json").write_text(json.dumps({**card, "architecture": arch}, indent=2) + "\n")
    return folder / f"{name}.safetensors"


def load(name: str, folder: Path = WEIGHTS) -> tuple[CVAE, dict[str, Any]]:
    """A saved generator (safetensors only) and its card."""
    from safetensors.torch import load_file

    card = json.loads((folder / f"{name}.json").read_text())
    model = CVAE(**card["architecture"])
    model.load_state_dict(load_file(str(folder / f"{name}.safetensors")))
    model.eval()
    return model, card


_TRAINED: dict[str, tuple[CVAE, dict[str, Any]]] = {}


def for_source(source_name: str, x_train: np.ndarray, y_train: np.ndarray, n_classes: int, *, split_seed: int,
               seed: int = 0, epochs: int = 150, packaged: bool = True) -> tuple[CVAE, dict[str, Any]]:
    """The packaged generator where one matches (digits, split seed 0), else one trained now on the training split
    (cached in this process by what it was trained on)."""
    if packaged and source_name in PACKAGED and split_seed == 0:
        model, card = load(PACKAGED[source_name])
        if card["architecture"]["dim"] == x_train.shape[1]:
            return model, {**card, "origin": "packaged"}
    from safeglass.hashing import content_hash

    key = content_hash({"source": source_name, "x": float(np.asarray(x_train, np.float64).sum()),
                        "n": len(y_train), "seed": seed, "epochs": epochs, "split_seed": split_seed})
    if key not in _TRAINED:
        model, record = train_cvae(x_train, y_train, n_classes, epochs=epochs, seed=seed)
        _TRAINED[key] = (model, {"name": f"cvae-{source_name}", "origin": "trained on the fly", "key": key,
                                 "training": record})
    return _TRAINED[key]


def quality(model: CVAE, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
            per_class: int = 100, seed: int = 0) -> dict[str, float]:
    """How the synthetic images stand beside the real ones, with logistic regressions (scikit-learn): accuracy on the
    real test split of one trained on real training images and of one trained on as many synthetic images (train on
    synthetic, test on real), and the held-out accuracy of a real-vs-synthetic discriminator (0.5: cannot tell).
    """
    from sklearn.linear_model import LogisticRegression

    classes = np.unique(y_train)
    xs = np.concatenate([model.sample(int(c), per_class, seed * 1000 + int(c)) for c in classes])
    ys = np.repeat(classes, per_class)
    real = LogisticRegression(max_iter=2000).fit(x_train, y_train).score(x_test, y_test)
    synth = LogisticRegression(max_iter=2000).fit(xs, ys).score(x_test, y_test)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x_train), min(len(x_train), len(xs)), replace=False)
    xd = np.concatenate([x_train[pick], xs])
    yd = np.r_[np.zeros(len(pick)), np.ones(len(xs))]
    order = rng.permutation(len(yd))
    half = len(order) // 2
    disc = LogisticRegression(max_iter=2000).fit(xd[order[:half]], yd[order[:half]])
    return {"real_trained_accuracy_on_real_test": round(float(real), 4),
            "synthetic_trained_accuracy_on_real_test": round(float(synth), 4),
            "real_vs_synthetic_discriminator_accuracy":
                round(float(disc.score(xd[order[half:]], yd[order[half:]])), 4),
            "synthetic_per_class": per_class}


def build_packaged(folder: Path = WEIGHTS) -> dict[str, Any]:
    """Train and save the packaged digits generator and its card (what `weights/cvae-digits.*` hold):
    `python -c "from safeglass.continual.generator import build_packaged; build_packaged()"`."""
    from safeglass.continual.streams import digits, split

    src = digits()
    tr, te = split(src, 0.25, 0)
    model, record = train_cvae(src.x[tr], src.y[tr], 10, epochs=150, seed=0)
    card = {"name": "cvae-digits", "kind": "class-conditional VAE (one hidden layer each way, 8-d latent)",
            "trained_on": "scikit-learn digits (UCI optdigits test set, 1,797 8x8 images), the training split only "
                          "(split_seed 0, test_fraction 0.25: 1,347 images); never a test image",
            "licence": "weights: the project's; data: UCI optical recognition of handwritten digits (CC BY 4.0)",
            "intended_use": "a synthetic source that contaminates continual-learning streams in safeglass tests and "
                            "sweeps; not a general image generator",
            "sampling": "decoder mean (sigmoid) for z ~ N(0, temperature^2 I), deterministic by seed",
            "training": record, "quality": quality(model, src.x[tr], src.y[tr], src.x[te], src.y[te])}
    save(model, card, "cvae-digits", folder)
    return card
