"""The serve config: one target behind one defense configuration, the address, the token, the limits, batching and
an optional log folder. From a YAML file (``safeglass serve --config FILE``) or the flags; targets, defenses and
judges come only from here, never from a request.

```yaml
target: {name: tiny, args: {family: qwen2-vl}}
defense: S+A                      # a defense entry as in a run config: name, preset, {name, args}, {id, chain}
host: 127.0.0.1
port: 8000
token_env: SAFEGLASS_SERVE_TOKEN  # required (and non-empty) when host is not loopback
limits: {max_body_bytes: 20000000, max_images: 4, max_new_tokens: 512}
batch: {max_size: 8, max_wait_ms: 20}
log_to: runs/served               # each answered request stored as a run stores a reply
```
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from safeglass.config import (
    Component,
    ConfigError,
    DefenseEntry,
    RunConfig,
    TargetEntry,
    parse_config,
    read_config,
    resolve_path,
    resolve_paths,
)
from safeglass.schema import Problem, Schema, validate

SERVED_DATASET = "served"  # the dataset id served requests are stored under
REQUESTS_FILE = "requests.jsonl"  # beside the store: the served requests as a jsonl dataset, for replay


class Limits(Schema):
    """What one request may hold; larger ones are refused with 413 (sizes) or 400, before the target sees them."""

    max_body_bytes: int = Field(20_000_000, ge=1)
    max_messages: int = Field(64, ge=1)
    max_depth: int = Field(16, ge=2)         # nesting of the request JSON (an image part sits 6 deep)
    max_text_chars: int = Field(100_000, ge=1)  # all text parts together
    max_images: int = Field(4, ge=0)
    max_image_bytes: int = Field(10_000_000, ge=1)
    max_image_pixels: int = Field(4096 * 4096, ge=1)
    max_new_tokens: int = Field(512, ge=1)   # max_tokens above it is clamped to it
    default_new_tokens: int = Field(256, ge=1)


class Batching(Schema):
    """Concurrent requests are handed to the defense's generate together: up to ``max_size`` a call, waiting at most
    ``max_wait_ms`` after the first for others."""

    max_size: int = Field(8, ge=1)
    max_wait_ms: int = Field(10, ge=0)


class ServeSchema(Schema):
    config_kind: ClassVar[str] = "serve"

    target: TargetEntry
    defense: DefenseEntry = DefenseEntry(name="none")
    model_name: str | None = None             # the served model id; default safeglass/<target>+<defense>
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token_env: str | None = None              # the environment variable holding the bearer token
    limits: Limits = Limits()
    batch: Batching = Batching()
    local_files: str | None = None            # a folder image paths / file:// URLs may be read from (off: None)
    log_to: str | None = None                 # a run folder: each answered request stored as a run's reply
    log_kind: Literal["harmful", "benign"] = "harmful"  # what the report counts the logged traffic as
    judges: list[Component] | None = None     # the judges `safeglass rejudge` runs on the log (default: run's)
    seed: int = 0

    def cross_check(self) -> list[Problem]:
        if self.token_env is not None and not self.token_env.strip():
            return [(("token_env",), "name an environment variable, or leave token_env out")]
        return []


@dataclass(frozen=True)
class ServeConfig:
    schema: ServeSchema
    run: RunConfig            # the run config the served target and defense make: specs, keys, the stored config
    run_raw: dict[str, Any]   # what the log folder's store keeps as its config (rejudge / report read it)
    source: str

    @property
    def model_id(self) -> str:
        s = self.schema
        return s.model_name or f"safeglass/{self.run.targets[0].id}+{self.run.defenses[0].id}"

    @property
    def log_dir(self) -> Path | None:
        return Path(self.schema.log_to) if self.schema.log_to else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_serve_config(raw: Any, source: str = "<dict>", base_dir: Path | None = None) -> ServeConfig:
    """A validated ServeConfig (every problem at once, naming ``source`` and the field); relative paths read against
    ``base_dir`` as a run config's are. The target and defense are checked as a run's would be, into a run config
    that the log folder keeps."""
    if isinstance(raw, dict):
        raw = {k: resolve_paths(v, base_dir) if k in ("target", "defense", "judges") else v for k, v in raw.items()}
        for key in ("log_to", "local_files"):
            if isinstance(raw.get(key), str) and base_dir is not None:
                raw = {**raw, key: resolve_path(raw[key], base_dir)}
    schema = validate(ServeSchema, raw, source)
    run_raw: dict[str, Any] = {
        "name": Path(schema.log_to).name if schema.log_to else "served",
        "description": "requests answered by safeglass serve",
        "targets": [raw["target"]], "defenses": [raw.get("defense", "none")],
        "datasets": [{"name": "jsonl", "id": SERVED_DATASET, "args": {
            "path": str(Path(schema.log_to or ".") / REQUESTS_FILE), "kind": schema.log_kind,
            "category": SERVED_DATASET}}],
        "seed": schema.seed,
    }
    if schema.judges:
        run_raw["judges"] = raw["judges"]
    run = parse_config(run_raw, source=source)
    return ServeConfig(schema, replace(run, datasets=()), run_raw, source)


def load_serve_config(path: str | Path) -> ServeConfig:
    raw, source, base_dir = read_config(path)
    return parse_serve_config(raw, source, base_dir)


def serve_config(config: str | Path | dict[str, Any] | ServeConfig | None = None, **flags: Any) -> ServeConfig:
    """A ServeConfig from a file, a dict or the flags (target, defense, host, port, token_env, log_to, ...); flags
    given (not None) override the file's fields."""
    if isinstance(config, ServeConfig) and not any(v is not None for v in flags.values()):
        return config
    if isinstance(config, str | Path):
        raw, source, base_dir = read_config(config)
    elif isinstance(config, dict):
        raw, source, base_dir = dict(config), "<dict>", None
    elif isinstance(config, ServeConfig):
        raw, source, base_dir = dict(config.schema.model_dump(exclude_unset=True)), config.source, None
    else:
        raw, source, base_dir = {}, "safeglass serve", Path.cwd()
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a serve config is a mapping, not {type(raw).__name__}")
    raw.update({k: v for k, v in flags.items() if v is not None})
    return parse_serve_config(raw, source, base_dir)


def check_address(cfg: ServeConfig, token: str | None) -> None:
    """A server reachable from other machines must ask for a token."""
    if token is None and not is_loopback(cfg.schema.host):
        raise ConfigError(f"{cfg.source}: host {cfg.schema.host!r} is not a loopback address; serving it without a "
                          "bearer token would let anyone on the network use the model: give --token-env NAME (an "
                          "environment variable holding the token) or bind to 127.0.0.1")
