"""node.toml -> a validated, typed model. Every later step reads only this model.

Precedence, lowest first: the TOML file, environment variables (ENV_OVERRIDES), command-line flags.
The model is plain frozen dataclasses checked by a small validator below rather than pydantic:
importing pydantic alone costs ~160 ms here, over half the budget of a cached `build.py fetch`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from . import urls
from .arch import ARCHES, OLDEST_VERSION, parse_version, published
from .errors import ConfigError

DEFAULT_CONFIG = Path("node.toml")
BUILTIN = "the built-in defaults"  # Config.source when no file was read

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
    "RPM_RELEASE": ("rpm.release", False),
    "FLANNELNODE_GPG_KEY": ("repo.gpg_key", False),
    "FLANNELNODE_REPO_URL": ("repo.baseurl", False),
    "FLANNELNODE_BACKOFF": ("fetch.backoff", False),
    "FLANNELNODE_QEMU_ACCEL": ("images.accelerator", False),
    "FLANNELNODE_DEBIAN_MIRROR": ("images.debian_mirror", False),
}
ENV_NUMBERS = {"FLANNELNODE_BACKOFF"}  # read as numbers (the model's check gives the range)


# -- field checks: each takes the typed value, returns it (possibly normalised) or raises ValueError


def _http_url(value: str) -> str:
    return urls.check(value)


def _endpoints(values: list[str]) -> list[str]:
    """etcd client URLs: rendered into flanneld's options and the user-data, so no credentials."""
    if not values:
        raise ValueError("needs at least one URL")
    return [urls.check(v, credentials=False) for v in values]


def _directory(value: Path | None) -> Path | None:
    if value is not None and value.exists() and not value.is_dir():
        raise ValueError(f"{value} exists and is not a directory")
    return value


def _absolute(value: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{value!r} must be an absolute path without '..'")
    return value.rstrip("/") or "/"


def _version(value: str) -> str:
    if parse_version(value) < OLDEST_VERSION:
        raise ValueError(f"{value} is older than v0.6.0, whose assets flannelnode cannot name")
    return value


def _arches(values: list[str]) -> list[str]:
    if not values:
        raise ValueError("needs at least one arch")
    for name in values:
        if name not in ARCHES:
            raise ValueError(f"unknown arch {name!r}; known: {', '.join(ARCHES)}")
    return list(dict.fromkeys(values))


def _between(low: float, high: float) -> Callable[[Any], Any]:
    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range; use {low:g} to {high:g}")
        return value

    return check


def _existing(value: Path | None) -> Path | None:
    if value is not None and not value.exists():
        raise ValueError(f"{value} does not exist (name an asset file or a directory of them)")
    return value


def _checked(default: Any, check: Callable[[Any], Any]) -> Any:
    if callable(default):
        return field(default_factory=default, metadata={"check": check})
    return field(default=default, metadata={"check": check})


# -- the model


@dataclass(frozen=True)
class Flannel:
    version: str = _checked("v0.27.4", _version)
    asset: Literal["binary", "tarball"] = "binary"
    arches: list[str] = _checked(lambda: ["amd64", "arm64"], _arches)

    def __post_init__(self) -> None:
        version, asset = self.version_tuple, self.asset
        missing = [a for a in self.arches if not published(ARCHES[a], version, asset)]
        if missing:
            binaries = asset == "tarball" and all(
                published(ARCHES[a], version, "binary") for a in missing
            )
            raise _FieldError(
                "arches",
                f"flannel {self.version} publishes no {asset} for {', '.join(missing)}"
                + ('; its bare binaries are: asset = "binary"' if binaries else ""),
            )

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        return parse_version(self.version)


@dataclass(frozen=True)
class Fetch:
    lock: Path = Path("release.lock")
    cache_dir: Path | None = _checked(None, _directory)
    local: Path | None = _checked(None, _existing)
    mirror: str | None = _checked(None, _http_url)
    github: str = _checked("https://github.com", _http_url)
    timeout: float = _checked(30.0, _between(0.1, 600))
    retries: int = _checked(5, _between(0, 20))
    backoff: float = _checked(0.5, _between(0, 60))  # seconds before the first retry, doubling


@dataclass(frozen=True)
class Etcd:
    endpoints: list[str] = _checked(
        lambda: [
            "https://192.168.31.61:2379",
            "https://192.168.31.62:2379",
            "https://192.168.31.63:2379",
        ],
        _endpoints,
    )
    ca_file: str = _checked("/opt/etcd/ssl/ca.pem", _absolute)
    cert_file: str = _checked("/opt/etcd/ssl/flannel-client.pem", _absolute)
    key_file: str = _checked("/opt/etcd/ssl/flannel-client-key.pem", _absolute)
    prefix: str = _checked("/coreos.com/network", _absolute)


def _ifaces(values: list[str]) -> list[str]:
    for name in values:
        if not name or any(c.isspace() or c in "\"'$%\\" for c in name):
            raise ValueError(f"{name!r} is not an interface name, address or regex")
    return values


def _ip(value: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


@dataclass(frozen=True)
class Flanneld:
    """flanneld's own options beyond etcd: which interface carries the overlay."""

    iface: list[str] = _checked(list, _ifaces)  # --iface, repeated; first match wins
    public_ip: str | None = _checked(None, _ip)  # --public-ip


def _cidr(value: str) -> str:
    import ipaddress

    _, slash, bits = value.partition("/")
    try:
        if not slash or not (bits.isascii() and bits.isdigit()):
            raise ValueError
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not a CIDR like 10.96.0.0/12") from None


def _cidrs(values: list[str]) -> list[str]:
    return [_cidr(v) for v in values]


@dataclass(frozen=True)
class Cluster:
    """The cluster's other ranges; lint warns when flannel's Network overlaps one. Optional."""

    service_cidrs: list[str] = _checked(list, _cidrs)  # kube-apiserver --service-cluster-ip-range
    node_networks: list[str] = _checked(list, _cidrs)  # where the hosts' own addresses are
    docker_bridge: str | None = _checked(None, _cidr)  # docker0 where docker runs without flannel


@dataclass(frozen=True)
class Install:
    prefix: str = _checked("/opt/kubernetes", _absolute)


def _repo_url(value: str) -> str:
    """flannelnode.repo is published beside the packages: no credentials in it."""
    return urls.check(value, ("http", "https", "file"), credentials=False)


def _rpm_release(value: str) -> str:
    if not value or not all(c.isalnum() or c in "._+~^" for c in value):
        raise ValueError(f"{value!r}: letters, digits and . _ + ~ ^ only (no '-')")
    return value


@dataclass(frozen=True)
class Rpm:
    release: str = _checked("1", _rpm_release)


@dataclass(frozen=True)
class Repo:
    baseurl: str | None = _checked(None, _repo_url)  # where build/repo/ will be served
    gpg_key: str | None = None  # key id, fingerprint, user id, or a secret key file
    gpg_home: Path | None = None
    passphrase_file: Path | None = None
    keep: int = _checked(3, _between(1, 100))  # releases kept beside each other (dnf downgrade)


def _variant(value: str) -> str:
    from . import targets

    if value not in targets.VARIANTS:
        raise ValueError(f"unknown image base {value!r}; known: {', '.join(targets.VARIANTS)}")
    return value


def _target_names(values: list[str]) -> list[str]:
    from . import targets

    if not values:
        raise ValueError(f"needs at least one target (known: {', '.join(targets.TARGETS)})")
    for name in values:
        if name not in targets.TARGETS:
            raise ValueError(f"unknown image target {name!r}; known: {', '.join(targets.TARGETS)}")
    return list(dict.fromkeys(values))


def _packer_value(value: Any) -> str:
    """Packer takes every -var as a string; TOML's scalars are spelled as Packer reads them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError(f"must be a string, number or boolean, not {_kind(value)}")


def _packer_tables(value: dict[str, Any]) -> dict[str, dict[str, str]]:
    """[images.packer.<target>] tables of Packer variables; which keys a target takes is the
    registry's business (targets.py), checked with the base in Images.__post_init__."""
    from . import targets

    tables: dict[str, dict[str, str]] = {}
    for name, table in value.items():
        if name not in targets.TARGETS:
            raise _FieldError(name, f"unknown image target; known: {', '.join(targets.TARGETS)}")
        if not isinstance(table, dict):
            raise _FieldError(name, f"must be a table of Packer variables, not {_kind(table)}")
        tables[name] = {}
        for key, item in table.items():
            try:
                tables[name][key] = _packer_value(item)
            except ValueError as exc:
                raise _FieldError(f"{name}.{key}", str(exc)) from None
    return tables


@dataclass(frozen=True)
class Images:
    """Node images: the base they start from, the targets built, Packer variables per target."""

    base: str = _checked("debian-bookworm", _variant)
    # unset: the registry's default list, which skips (loudly) a target this host cannot build;
    # a target listed here that cannot be built is an error
    targets: list[str] | None = _checked(None, _target_names)
    accelerator: Literal["tcg", "kvm"] = "tcg"  # qemu: kvm where /dev/kvm boots a stock kernel
    debian_mirror: str | None = _checked(None, _http_url)  # build.py base; default: the host's
    packer: dict[str, Any] = _checked(dict, _packer_tables)

    def __post_init__(self) -> None:
        from . import targets

        for name, settings in self.packer.items():
            why = targets.check_settings(name, settings, self.base)
            if why is not None:
                key, _, reason = why.partition(": ")
                raise _FieldError(f"packer.{key}", reason)


@dataclass(frozen=True)
class Config:
    flannel: Flannel = field(default_factory=Flannel)
    fetch: Fetch = field(default_factory=Fetch)
    etcd: Etcd = field(default_factory=Etcd)
    # flannel's net-conf.json, verbatim; `build.py lint` checks it against flannel's own rules.
    network: dict[str, Any] = field(
        default_factory=lambda: {"Network": "172.17.0.0/16", "Backend": {"Type": "vxlan"}}
    )
    install: Install = field(default_factory=Install)
    flanneld: Flanneld = field(default_factory=Flanneld)
    rpm: Rpm = field(default_factory=Rpm)
    repo: Repo = field(default_factory=Repo)
    cluster: Cluster = field(default_factory=Cluster)
    images: Images = field(default_factory=Images)
    # the file this came from, for messages; not a setting
    source: str = field(default=BUILTIN, compare=False, metadata={"internal": True})

    @property
    def cache_dir(self) -> Path:
        if self.fetch.cache_dir is not None:
            return self.fetch.cache_dir
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "flannelnode"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings; settings only."""
        settings = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            if f.metadata.get("internal"):
                del settings[f.name]
        return _jsonable(settings)


# -- validation: raw TOML tables -> the model, collecting every problem with its field path


class _FieldError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _coerce(value: Any, hint: Any, loc: str, errors: list[tuple[str, str]]) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, loc, errors)
    if origin in (Union, types.UnionType):
        if value is None or value == "":
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), loc, errors)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"must be a list, not {_kind(value)}")
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_coerce(item, args[0], loc, errors))
            except ValueError as exc:
                raise ValueError(f"item {i}: {exc}") from None
        return items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"must be a table, not {_kind(value)}")
        return value
    if hint is Path:
        if not isinstance(value, str | Path):
            raise ValueError(f"must be a path string, not {_kind(value)}")
        return Path(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (isinstance(value, bool) and hint is not bool):
        raise ValueError(f"must be {_TYPE_NAMES.get(hint, hint.__name__)}, not {_kind(value)}")
    return value


def _build(cls: type, raw: Any, loc: str, errors: list[tuple[str, str]]) -> Any:
    if not isinstance(raw, dict):
        errors.append((loc, f"must be a table, not {_kind(raw)}"))
        return None
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in raw.keys() - fields.keys():
        errors.append((_join(loc, key), "unknown key (check its spelling against node.toml)"))
    values, before = {}, len(errors)
    for name in raw.keys() & fields.keys():
        where = _join(loc, name)
        try:
            value = _coerce(raw[name], hints[name], where, errors)
            check = fields[name].metadata.get("check")
            values[name] = check(value) if check and value is not None else value
        except _FieldError as exc:  # a check that names a key inside its field
            errors.append((_join(where, exc.field), str(exc)))
        except ValueError as exc:
            errors.append((where, str(exc)))
    if len(errors) > before:
        return None
    try:
        return cls(**values)
    except _FieldError as exc:
        errors.append((_join(loc, exc.field), str(exc)))
        return None


def _join(loc: str, key: str) -> str:
    return f"{loc}.{key}" if loc else key


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value


# -- loading


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key} must be a table, not {_kind(child)}")
        node = child
    node[leaf] = value


def _relative_to(raw: dict[str, Any], base: Path) -> None:
    """Paths in the file are relative to the file, as in every tool that reads a config file."""
    for section, keys in (
        ("fetch", ("lock", "cache_dir", "local")),
        ("repo", ("gpg_home", "passphrase_file")),
    ):
        table = raw.get(section)
        if not isinstance(table, dict):
            continue
        for key in keys:
            value = table.get(key)
            if isinstance(value, str) and value:
                table[key] = str(base / Path(value).expanduser())


def from_dict(raw: dict[str, Any], source: str = "<config>", origin: Mapping[str, str] = {}):
    errors: list[tuple[str, str]] = []
    cfg = _build(Config, raw, "", errors)
    if errors:
        lines = [f"{source}: invalid configuration:"]
        for loc, reason in errors:
            where = next((src for key, src in origin.items() if loc.startswith(key)), None)
            lines.append(f"  {loc}: {reason}" + (f" (from {where})" if where else ""))
        raise ConfigError("\n".join(lines))
    return dataclasses.replace(cfg, source=source)


def _tarball_selects_its_kind(
    raw: dict[str, Any], env: Mapping[str, str], overrides: Mapping[str, Any], origin: dict
) -> None:
    """FLANNEL_TARBALL=path means "use this tarball": it selects asset = "tarball" (it used to be
    ignored unless the kind was already tarball). Asking for the binary kind beside it, or naming
    another local source, is a contradiction and exits 2."""
    tarball = env.get("FLANNEL_TARBALL")
    if not tarball:
        return
    local = env.get("FLANNEL_LOCAL")
    if local and local != tarball:
        raise ConfigError(
            f"FLANNEL_TARBALL={tarball} and FLANNEL_LOCAL={local} name different local sources; "
            "set one of them"
        )
    if overrides.get("flannel.asset") == "binary" or (
        env.get("FLANNEL_ASSET") == "binary" and overrides.get("flannel.asset") is None
    ):
        flag = "--asset binary" if overrides.get("flannel.asset") else "FLANNEL_ASSET=binary"
        raise ConfigError(
            f"FLANNEL_TARBALL={tarball} names a release tarball, but {flag} asks for the bare "
            "binary; drop one of them (FLANNEL_LOCAL or --local name a binary, or a directory "
            "of assets of either kind)"
        )
    _set(raw, "flannel.asset", "tarball")
    origin["flannel.asset"] = "environment variable FLANNEL_TARBALL"


def _env_number(var: str, value: str) -> str | float:
    if var not in ENV_NUMBERS:
        return value
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"environment variable {var}: {value!r} is not a number") from None


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Config:
    """Read, override and validate. Raises ConfigError naming the file, field and reason.

    Without a path, ./node.toml if it exists, else the built-in defaults (Config.source says
    which: callers tell the user). labels name where overrides came from in messages, by dotted
    key or its prefix (default: "command line")."""
    explicit = path is not None
    path = path or DEFAULT_CONFIG
    if not path.exists():
        if explicit:
            raise ConfigError(
                f"{path}: no such config file (pass --config with an existing node.toml)"
            )
        return loads(None, BUILTIN, Path.cwd(), env, overrides, labels)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return loads(text, str(path), path.resolve().parent, env, overrides, labels)


def loads(
    text: str | None,
    source: str,
    base: Path,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Config:
    """A config from TOML text (None: nothing but defaults) named `source` in messages; relative
    paths in it are relative to `base`."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if text is not None:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        _relative_to(raw, base)
    origin: dict[str, str] = {}
    for var, (dotted, is_list) in ENV_OVERRIDES.items():
        value = env.get(var)
        if value:
            items = [v.strip() for v in value.split(",") if v.strip()]
            _set(raw, dotted, items if is_list else _env_number(var, value))
            origin[dotted] = f"environment variable {var}"
    _tarball_selects_its_kind(raw, env, overrides or {}, origin)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set(raw, dotted, value)
            origin[dotted] = next(
                (label for key, label in (labels or {}).items()
                 if dotted == key or dotted.startswith(key + ".")),
                "command line",
            )  # fmt: skip
    return from_dict(raw, source, origin)
