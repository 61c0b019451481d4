"""node.toml -> a validated, typed model. Every later step reads only this model.

Precedence, lowest first: the TOML file, environment variables (ENV_OVERRIDES), command-line flags.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .arch import ARCHES, OLDEST_VERSION, parse_version, published
from .errors import ConfigError

DEFAULT_CONFIG = Path("node.toml")

# environment variable -> (dotted config key, is a comma-separated list)
ENV_OVERRIDES: dict[str, tuple[str, bool]] = {
    "FLANNEL_VERSION": ("flannel.version", False),
    "FLANNEL_ASSET": ("flannel.asset", False),
    "FLANNEL_ARCHES": ("flannel.arches", True),
    "ARCH": ("flannel.arches", True),
    "FLANNEL_MIRROR": ("fetch.mirror", False),
    "FLANNEL_TARBALL": ("fetch.local", False),
    "FLANNEL_LOCAL": ("fetch.local", False),
    "FLANNELNODE_CACHE": ("fetch.cache_dir", False),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
    return value.rstrip("/")


class Flannel(_Section):
    version: str = "v0.27.4"
    asset: Literal["binary", "tarball"] = "binary"
    arches: list[str] = Field(default_factory=lambda: ["amd64", "arm64"], min_length=1)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if parse_version(value) < OLDEST_VERSION:
            raise ValueError(f"{value} is older than v0.6.0, whose assets flannelnode cannot name")
        return value

    @field_validator("arches")
    @classmethod
    def _arches(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in ARCHES:
                raise ValueError(f"unknown arch {name!r}; known: {', '.join(ARCHES)}")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _published(self) -> Flannel:
        version = parse_version(self.version)
        missing = [a for a in self.arches if not published(ARCHES[a], version)]
        if missing:
            raise ValueError(f"flannel {self.version} publishes no asset for {', '.join(missing)}")
        return self

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        return parse_version(self.version)


class Fetch(_Section):
    lock: Path = Path("release.lock")
    cache_dir: Path | None = None
    local: Path | None = None
    mirror: str | None = None
    github: str = "https://github.com"
    timeout: float = Field(default=30.0, gt=0, le=600)
    retries: int = Field(default=5, ge=0, le=20)

    _url = field_validator("mirror", "github")(classmethod(lambda cls, v: v and _http_url(v)))

    @field_validator("local")
    @classmethod
    def _local_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.exists():
            raise ValueError(f"{value} does not exist (a release asset file or a directory of them)")
        return value


class Etcd(_Section):
    endpoints: list[str] = Field(
        default_factory=lambda: [
            "https://192.168.31.61:2379",
            "https://192.168.31.62:2379",
            "https://192.168.31.63:2379",
        ],
        min_length=1,
    )
    ca_file: str = "/opt/etcd/ssl/ca.pem"
    cert_file: str = "/opt/etcd/ssl/server.pem"
    key_file: str = "/opt/etcd/ssl/server-key.pem"
    prefix: str = "/coreos.com/network"

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        return [_http_url(v) for v in value]

    @field_validator("ca_file", "cert_file", "key_file", "prefix")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not PurePosixPath(value).is_absolute():
            raise ValueError(f"{value!r} must be an absolute path")
        return value.rstrip("/") or "/"


class Install(_Section):
    prefix: str = "/opt/kubernetes"

    @field_validator("prefix")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not PurePosixPath(value).is_absolute() or ".." in PurePosixPath(value).parts:
            raise ValueError(f"{value!r} must be an absolute path without '..'")
        return value.rstrip("/")


class Config(_Section):
    flannel: Flannel = Field(default_factory=Flannel)
    fetch: Fetch = Field(default_factory=Fetch)
    etcd: Etcd = Field(default_factory=Etcd)
    # flannel's net-conf.json, verbatim; `build.py lint` checks it against flannel's own rules.
    network: dict[str, Any] = Field(
        default_factory=lambda: {"Network": "172.17.0.0/16", "Backend": {"Type": "vxlan"}}
    )
    install: Install = Field(default_factory=Install)

    @property
    def cache_dir(self) -> Path:
        if self.fetch.cache_dir is not None:
            return self.fetch.cache_dir
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "flannelnode"


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key} must be a table, not {type(child).__name__}")
        node = child
    node[leaf] = value


def _relative_to(raw: dict[str, Any], base: Path) -> None:
    """Paths in the file are relative to the file, as in every tool that reads a config file."""
    fetch = raw.get("fetch")
    if not isinstance(fetch, dict):
        return
    for key in ("lock", "cache_dir", "local"):
        value = fetch.get(key)
        if isinstance(value, str) and value:
            fetch[key] = str(base / Path(value).expanduser())


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read, override and validate. Raises ConfigError naming the file, field and reason."""
    env = os.environ if env is None else env
    explicit = path is not None
    path = path or DEFAULT_CONFIG
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        _relative_to(raw, path.resolve().parent)
    elif explicit:
        raise ConfigError(f"{path}: no such config file (pass --config with an existing node.toml)")

    origin: dict[str, str] = {}
    for var, (dotted, is_list) in ENV_OVERRIDES.items():
        value = env.get(var)
        if value:
            _set(raw, dotted, [v.strip() for v in value.split(",") if v.strip()] if is_list else value)
            origin[dotted] = f"environment variable {var}"
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set(raw, dotted, value)
            origin[dotted] = "command line"

    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, origin)) from None


def _describe(exc: ValidationError, path: Path, origin: Mapping[str, str]) -> str:
    lines = [f"{path}: invalid configuration:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        where = next((src for key, src in origin.items() if loc.startswith(key)), None)
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key (check the spelling against node.toml in the repository)"
        lines.append(f"  {loc}: {reason}" + (f" (from {where})" if where else ""))
    return "\n".join(lines)
