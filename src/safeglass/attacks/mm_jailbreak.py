"""Multimodal jailbreak: a text jailbreak template and an attack image at once.

The two channels attack together: the last user turn is wrapped in a jailbreak template (the text-jailbreak
attack's templates, Wei et al. 2023, or a user's ``template_file``) and carries an attack image, either

* the typographic attack's image (default): the request's key word leaves the text for the image, and the
  template wraps the rewritten text, so the harmful word reaches the model only through the picture while the
  template pushes against a refusal (``typographic`` passes options to the typographic attack); or
* a stored adversarial image (``image_file``: a PNG, e.g. one a ``pgd`` run saved under ``runs/<run>/images/``),
  added to the wrapped request as it is: an image optimised toward compliance under a compliance-seeking text.

Combining them is what the multimodal-jailbreak class of the defense comparison (docs/defenses.md) measures: a
defense that reads only the text (a safety prompt) or only the image (OCR, SmoothVLM) may stop one channel and
miss the other. Measured against the same requests with ``text-jailbreak`` alone and ``typographic`` alone, it
says whether the channels add up.

A request the typographic attack leaves alone (no key word, ``missing: skip``) is still wrapped, without an
image, and marked ``attack_image: null``. ``metadata["attack"]`` records the template and its text hash, the image's
source (the typographic record with its word, or the file's path) and content hash; ``metadata["objective"]``
keeps the original request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safeglass.attacks.base import Attack
from safeglass.attacks.templates import TemplateJailbreak
from safeglass.attacks.typographic import TypographicAttack
from safeglass.types import ImageRef, Sample, Turn


def read_png(path: str | Path) -> bytes:
    """The bytes of a picture file, as PNG: a PNG as it is (its hash is the name a run saved it under), anything
    else Pillow reads converted. ValueError naming the file when it is no picture."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if data[:8] == b"\x89PNG\r\n\x1a\n":
                return data
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="PNG")
            return buf.getvalue()
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"mm-jailbreak: cannot read image {str(path)!r}: {exc}") from exc


class MMJailbreak(Attack):
    """A text jailbreak template and an attack image together (typographic image, or a stored adversarial PNG);
    see the module docstring.

    Args:
        template: the built-in template: prefix_injection, refusal_suppression or combination.
        template_file: a UTF-8 text file holding your own template with a {prompt} placeholder; replaces
            ``template``.
        image_file: a PNG (e.g. a pgd run's runs/<run>/images/<hash>.png) added to every wrapped request;
            unset: the typographic attack's image, its key word taken out of the text.
        typographic: options of the typographic attack that makes the image (canvas, words, rephrase, ...;
            default: its defaults); not with ``image_file``.
    """

    name = "mm-jailbreak"
    access = "black-box"

    def __init__(self, template: str = "combination", template_file: str | None = None,
                 image_file: str | None = None, typographic: Mapping[str, Any] | None = None) -> None:
        if image_file is not None and typographic is not None:
            raise ValueError("mm-jailbreak: give image_file (a stored picture) or typographic (options of the "
                             "typographic image), not both")
        try:
            self.jailbreak = TemplateJailbreak(template=template, template_file=template_file)
        except ValueError as exc:  # its messages name text-jailbreak; the user configured this attack
            raise ValueError(str(exc).replace("text-jailbreak:", "mm-jailbreak:", 1)) from exc
        self.image_path = None if image_file is None else str(image_file)
        self.image_bytes = None if image_file is None else read_png(image_file)
        try:
            self.typo = None if image_file is not None else TypographicAttack(**dict(typographic or {}))
        except TypeError as exc:
            raise ValueError(f"mm-jailbreak: option 'typographic': {exc}") from exc

    def config(self) -> dict[str, Any]:
        cfg = self.option_key()
        # the template by its text (an edited built-in must not reuse older results; image_file is keyed by its
        # content already) and the typographic image by the typographic attack's own key (its words by content,
        # its defaults included)
        cfg["text"] = self.jailbreak.text_hash
        cfg["typographic"] = None if self.typo is None else self.typo.config()
        return cfg

    def apply(self, sample: Sample, target: Any = None) -> Sample:
        idx = _last_user(sample)
        request = sample.turns[idx].text
        if self.typo is not None:
            imaged = self.typo.apply(sample)
            typo_info = imaged.metadata["attack"]
            added = imaged.turns[idx].images[:len(imaged.turns[idx].images) - len(sample.turns[idx].images)]
            source: dict[str, Any] = {"source": "typographic", **typo_info}
        else:
            picture = ImageRef(self.image_bytes)
            turn = sample.turns[idx]
            # the attack image first: single-image models read the first image
            imaged = dataclasses.replace(sample, turns=(*sample.turns[:idx], Turn(turn.role, turn.text,
                                                                                 (picture, *turn.images)),
                                                        *sample.turns[idx + 1:]))
            added = (picture,)
            source = {"source": "file", "path": self.image_path}
        turn = imaged.turns[idx]
        wrapped = Turn(turn.role, self.jailbreak.wrap(turn.text), turn.images)
        turns = (*imaged.turns[:idx], wrapped, *imaged.turns[idx + 1:])
        info: dict[str, Any] = {
            **self.config(), "applied": True,
            "attack_image": {**source, "hash": added[0].content_hash()} if added else None}
        if self.jailbreak.template_file is not None:
            info["template_file"] = self.jailbreak.template_file
        metadata = {**sample.metadata, "attack": info}
        metadata.setdefault("objective", request)
        return dataclasses.replace(sample, turns=turns, metadata=metadata)


def _last_user(sample: Sample) -> int:
    for i in range(len(sample.turns) - 1, -1, -1):
        if sample.turns[i].role == "user":
            return i
    raise ValueError(f"sample {sample.id}: the mm-jailbreak attack needs a user turn")
