"""The value types that flow through the whole pipeline, and the Target protocol they meet.

A kernel module: it imports nothing of the project but hashing, so every stage (data, attacks, defenses,
targets, judges, eval) can name a Sample, a Conversation, a Generation or a Target without importing a
stage after itself.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from safeglass.hashing import bytes_hash, content_hash

if TYPE_CHECKING:  # PIL is imported lazily: loading text datasets should not need it
    from PIL.Image import Image as PILImage

Kind = Literal["harmful", "benign"]
KINDS: tuple[str, ...] = ("harmful", "benign")


class ImageRef:
    """An image given as a path, a PIL image or encoded bytes, identified by a content hash.

    The hash is of the encoded file bytes (path / bytes) or of the PNG encoding (PIL), so the same
    picture reaches the same result key however it was handed over.
    """

    __slots__ = ("_path", "_bytes", "_pil", "_hash")

    def __init__(self, source: str | Path | bytes | PILImage) -> None:
        self._path: Path | None = None
        self._bytes: bytes | None = None
        self._pil = None
        self._hash: str | None = None
        if isinstance(source, str | Path):
            self._path = Path(source)
        elif isinstance(source, bytes | bytearray):
            self._bytes = bytes(source)
        elif hasattr(source, "save") and hasattr(source, "size"):
            self._pil = source
        else:
            raise TypeError(f"ImageRef takes a path, bytes or a PIL image, not {type(source).__name__}")

    @property
    def path(self) -> Path | None:
        return self._path

    def data(self) -> bytes:
        """Encoded image bytes (PNG for in-memory PIL images)."""
        if self._bytes is not None:
            return self._bytes
        if self._path is not None:
            return self._path.read_bytes()
        buf = io.BytesIO()
        self._pil.save(buf, format="PNG")
        self._bytes = buf.getvalue()
        return self._bytes

    def content_hash(self) -> str:
        if self._hash is None:
            self._hash = bytes_hash(self.data())
        return self._hash

    def pil(self) -> PILImage:
        from PIL import Image

        if self._pil is not None:
            return self._pil
        img = Image.open(io.BytesIO(self.data()))
        img.load()
        return img.convert("RGB") if img.mode not in ("RGB", "L") else img

    def data_url(self) -> str:
        data = self.data()
        mime = "image/png"
        if data[:3] == b"\xff\xd8\xff":
            mime = "image/jpeg"
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            mime = "image/webp"
        elif data[:6] in (b"GIF87a", b"GIF89a"):
            mime = "image/gif"
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    def describe(self) -> str:
        return str(self._path) if self._path is not None else f"<image {self.content_hash()}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageRef) and other.content_hash() == self.content_hash()

    def __hash__(self) -> int:
        return hash(self.content_hash())

    def __repr__(self) -> str:
        return f"ImageRef({self.describe()})"


@dataclass(frozen=True)
class Turn:
    """One message. Images are shown to the model before the text of the same turn."""

    role: Literal["system", "user", "assistant"]
    text: str = ""
    images: tuple[ImageRef, ...] = ()

    def to_key(self) -> dict[str, Any]:
        return {"role": self.role, "text": self.text, "images": [i.content_hash() for i in self.images]}


Conversation = tuple[Turn, ...]


def user(text: str, *images: ImageRef | str | Path | bytes) -> Turn:
    return Turn("user", text, tuple(i if isinstance(i, ImageRef) else ImageRef(i) for i in images))


def conversation_key(conv: Conversation) -> list[dict[str, Any]]:
    return [t.to_key() for t in conv]


@dataclass(frozen=True)
class Sample:
    """A prompt to put to a model, with what is known about it.

    ``kind`` says whether a compliant answer would be harmful ("harmful") or whether refusing it is
    over-refusal ("benign").  ``id`` is unique within its ``source``.
    """

    id: str
    turns: Conversation
    kind: Kind = "harmful"
    category: str = "uncategorized"
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"sample {self.id}: kind must be one of {KINDS}, not {self.kind!r}")
        if not self.turns:
            raise ValueError(f"sample {self.id}: a sample needs at least one turn")

    @classmethod
    def from_text(cls, id: str, text: str, images: tuple[ImageRef, ...] = (), **kw: Any) -> Sample:
        return cls(id=id, turns=(Turn("user", text, tuple(images)),), **kw)

    @property
    def prompt(self) -> str:
        """The last user turn's text: what a reader of a report wants to see first."""
        for t in reversed(self.turns):
            if t.role == "user":
                return t.text
        return self.turns[-1].text

    @property
    def images(self) -> tuple[ImageRef, ...]:
        return tuple(img for t in self.turns for img in t.images)

    def content_hash(self) -> str:
        """Hash of what the model sees (turns) plus kind; not of free metadata."""
        return content_hash({"turns": conversation_key(self.turns), "kind": self.kind})

    def with_turns(self, turns: Conversation, **changes: Any) -> Sample:
        return replace(self, turns=tuple(turns), **changes)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Sample:
        """The sample a stored record describes, its images read from their paths (``to_record`` after the run
        saved in-memory images as files)."""
        turns = tuple(Turn(t["role"], t["text"], tuple(ImageRef(Path(i["ref"])) for i in t.get("images", [])))
                      for t in record["turns"])
        return cls(id=record["id"], turns=turns, kind=record.get("kind", "harmful"),
                   category=record.get("category", "uncategorized"), source=record.get("source", ""),
                   metadata=dict(record.get("metadata") or {}))

    def to_record(self) -> dict[str, Any]:
        """A JSON-able description for stores and reports (images by description and hash)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "category": self.category,
            "source": self.source,
            "prompt": self.prompt,
            "turns": [
                {"role": t.role, "text": t.text, "images": [{"ref": i.describe(), "hash": i.content_hash()}
                                                           for i in t.images]}
                for t in self.turns
            ],
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class GenerationParams:
    """What changes outputs. Batch size and concurrency are deliberately not here: they must not."""

    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> GenerationParams:
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown generation parameter(s): {', '.join(sorted(unknown))}")
        if "stop" in d:
            d["stop"] = tuple(d["stop"])
        return cls(**d)


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    finish_reason: str = "stop"
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Target(Protocol):
    """A model under test.

    ``name`` is human readable; ``config()`` returns the JSON-able settings that identify the model
    and change its outputs (weights hash, dtype, chat template, ...); it is part of result keys.
    """

    name: str

    def config(self) -> dict[str, Any]: ...

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[Generation]: ...


@dataclass(frozen=True)
class NeuronSite:
    """A named group of neurons a white-box target exposes (e.g. LM MLP neurons of layer 3)."""

    name: str           # "lm.mlp.3"
    module_path: str    # "model.language_model.layers.3.mlp.down_proj"
    hook: str           # "pre" (input of module) or "post" (output)
    width: int
    component: str      # "language_model" | "vision_tower" | "projector"
    layer: int


# --- what judges read and say (a value type: defenses that use judges need it before the judges stage) ---

@dataclass(frozen=True)
class JudgeInput:
    prompt: str
    response: str
    images: tuple[ImageRef, ...] = ()
    kind: str = "harmful"
    category: str = ""
    reference: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # the sample's metadata


@dataclass(frozen=True)
class Verdict:
    """``flag`` is True when the measured attribute is present (refused / toxic / harmful)."""

    flag: bool
    score: float
    label: str
    reason: str = ""
