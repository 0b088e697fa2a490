"""OpenAI chat requests into safeglass conversations, within the server's limits: the inverse of
``targets/openai_compat.py:turn_to_message``. Every refusal is an :class:`ApiError` with the status and the
OpenAI-style error body a client expects."""

from __future__ import annotations

import base64
import binascii
import io
import math
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from safeglass.serve.config import Limits
from safeglass.types import Conversation, GenerationParams, ImageRef, Turn

IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/webp": "WEBP",
               "image/gif": "GIF"}
ROLES = ("system", "user", "assistant")


class ApiError(Exception):
    """A request the server refuses: ``status`` and the body ``{"error": {message, type, param, code}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def too_large(message: str, param: str | None = None) -> ApiError:
    return ApiError(413, message, param=param, code="request_too_large")


def depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (iterative: no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def check_depth(body: Any, limits: Limits) -> None:
    if depth(body) > limits.max_depth:
        raise bad(f"the request nests lists and objects more than {limits.max_depth} deep", code="too_deep")


def conversation(messages: Any, limits: Limits, local_files: str | None) -> Conversation:
    """The request's ``messages`` as Turns (text parts joined by newlines, images in their order)."""
    if not isinstance(messages, list) or not messages:
        raise bad("'messages' must be a non-empty list", "messages")
    if len(messages) > limits.max_messages:
        raise too_large(f"{len(messages)} messages; this server takes at most {limits.max_messages}", "messages")
    turns, chars, images = [], 0, 0
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad(f"{where} must be an object", where)
        role = m.get("role")
        if role == "developer":  # the newer name of the system role
            role = "system"
        if role not in ROLES:
            raise bad(f"{where}.role must be one of {', '.join(ROLES)}, not {role!r}", f"{where}.role")
        texts, refs = _content(m.get("content"), f"{where}.content", limits, local_files, images)
        images += len(refs)
        chars += sum(len(t) for t in texts)
        if chars > limits.max_text_chars:
            raise too_large(f"the messages hold more than {limits.max_text_chars} characters of text", where)
        turns.append(Turn(role, "\n".join(texts), tuple(refs)))
    if turns[-1].role != "user":
        raise bad("the last message must be the user's", f"messages[{len(turns) - 1}].role")
    return tuple(turns)


def _content(content: Any, where: str, limits: Limits, local_files: str | None,
             images_before: int) -> tuple[list[str], list[ImageRef]]:
    if isinstance(content, str):
        return [content], []
    if content is None:
        return [], []
    if not isinstance(content, list):
        raise bad(f"{where} must be a string or a list of content parts", where)
    texts, refs = [], []
    for j, part in enumerate(content):
        pw = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise bad(f"{pw} must be a content part object ({{'type': 'text', ...}} or {{'type': 'image_url', ...}})",
                      pw)
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise bad(f"{pw}.text must be a string", f"{pw}.text")
            texts.append(part["text"])
        elif kind == "image_url":
            spec = part.get("image_url")
            url = spec.get("url") if isinstance(spec, dict) else spec
            if not isinstance(url, str):
                raise bad(f"{pw}.image_url.url must be a string", f"{pw}.image_url")
            if images_before + len(refs) >= limits.max_images:
                raise too_large(f"more than {limits.max_images} images in one request", pw)
            refs.append(image(url, f"{pw}.image_url.url", limits, local_files))
        else:
            raise bad(f"{pw}.type must be 'text' or 'image_url', not {kind!r}", f"{pw}.type")
    return texts, refs


def image(url: str, where: str, limits: Limits, local_files: str | None) -> ImageRef:
    """A data URL of a PNG, JPEG, WebP or GIF image, or (when the server allows a folder) a file in it; checked to
    decode as the image it says it is, within the size and pixel limits."""
    if url.startswith("data:"):
        header, sep, payload = url[5:].partition(",")
        mime, *opts = header.split(";")
        if not sep or "base64" not in opts:
            raise bad("an image data URL must be base64: data:image/png;base64,...", where, "invalid_image_url")
        if mime.lower() not in IMAGE_TYPES:
            raise bad(f"data URL of type {mime or 'none'!r}: images must be one of {', '.join(sorted(IMAGE_TYPES))}",
                      where, "invalid_image_format")
        if len(payload) * 3 // 4 > limits.max_image_bytes:
            raise too_large(f"an image over {limits.max_image_bytes} bytes", where)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise bad("the image data URL is not valid base64", where, "invalid_image_url") from None
        return _checked(data, IMAGE_TYPES[mime.lower()], where, limits)
    if local_files is None:
        if url.startswith(("http://", "https://")):
            raise bad("this server does not fetch image URLs; send the image as a data URL", where,
                      "invalid_image_url")
        raise bad("images must be data URLs (data:image/png;base64,...); local files are off on this server", where,
                  "invalid_image_url")
    path = Path(unquote(urlparse(url).path)) if url.startswith("file://") else Path(url)
    root = Path(local_files).resolve()
    resolved = path.resolve() if path.is_absolute() else (root / path).resolve()
    if not resolved.is_relative_to(root) or not resolved.is_file():
        raise bad(f"no image file {url!r} in the folder this server reads images from", where, "invalid_image_url")
    if resolved.stat().st_size > limits.max_image_bytes:
        raise too_large(f"an image over {limits.max_image_bytes} bytes", where)
    return _checked(resolved.read_bytes(), None, where, limits)


def _checked(data: bytes, expected: str | None, where: str, limits: Limits) -> ImageRef:
    from PIL import Image

    if len(data) > limits.max_image_bytes:
        raise too_large(f"an image over {limits.max_image_bytes} bytes", where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL's bomb guard, made an error
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            w, h = img.size
            if w * h > limits.max_image_pixels:
                raise too_large(f"a {w}x{h} image: over {limits.max_image_pixels} pixels", where)
            img.load()
    except ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_large("the image decodes to too many pixels", where) from None
    except Exception:
        raise bad("the image does not decode (a PNG, JPEG, WebP or GIF)", where, "invalid_image") from None
    if fmt not in set(IMAGE_TYPES.values()) or (expected is not None and fmt != expected):
        raise bad(f"the image is {fmt or 'not an image'}, not {expected or 'PNG, JPEG, WebP or GIF'}", where,
                  "invalid_image_format")
    return ImageRef(data)


def params(body: dict[str, Any], limits: Limits) -> GenerationParams:
    """max_tokens / max_completion_tokens (clamped to the server's limit), temperature, top_p, seed, stop."""
    given = {k: body.get(k) for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None}
    n = next(iter(given.values()), limits.default_new_tokens)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise bad("max_tokens must be a positive integer", next(iter(given), "max_tokens"))
    out: dict[str, Any] = {"max_new_tokens": min(n, limits.max_new_tokens)}
    for key, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        v = body.get(key)
        if v is None:
            continue
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or not low <= v <= high:
            raise bad(f"{key} must be a number in [{low}, {high}]", key)
        if key == "top_p" and v == 0:
            raise bad("top_p must be above 0", key)
        out[key] = float(v)
    seed = body.get("seed")
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise bad("seed must be an integer", "seed")
        out["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
            raise bad("stop must be a string or a list of at most 4 strings", "stop")
        out["stop"] = tuple(stop)
    n_choices = body.get("n", 1)
    if n_choices not in (1, None):
        raise bad("this server returns one choice (n = 1)", "n")
    return GenerationParams(**out)
