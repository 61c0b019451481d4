"""`build.py seed`: run the node's own seeder (scripts/flannel-seed-etcd) from the build host.

The seeder is standard-library Python that ships to nodes; loading that very file here means one
implementation serves first boot and the build host.
"""

from __future__ import annotations

from functools import cache
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from os import PathLike
from pathlib import Path
from types import ModuleType

from .config import Config

SEEDER = Path(__file__).resolve().parent.parent / "scripts" / "flannel-seed-etcd"
DEFAULT_DEADLINE = 300.0

StrPath = str | PathLike[str]


@cache
def seeder() -> ModuleType:
    """scripts/flannel-seed-etcd as a module (it has no .py suffix, hence the explicit loader)."""
    loader = SourceFileLoader("flannel_seed_etcd", str(SEEDER))
    spec = spec_from_loader(loader.name, loader)
    assert spec is not None
    module = module_from_spec(spec)
    loader.exec_module(module)
    return module


def api_for(config: Config) -> str:
    return seeder().api_for_version(config.flannel.version)


def network_json(config: Config) -> str:
    """What the node seeds: the payload's net-conf.json text, byte for byte."""
    from .netconf import render

    return render(config.network)


def run(
    config: Config,
    *,
    endpoints: list[str] | None = None,
    cacert: StrPath | None,
    cert: StrPath | None,
    key: StrPath | None,
    force: bool = False,
    deadline: float = DEFAULT_DEADLINE,
    api: str | None = None,
    timeout: float = 5.0,
    quiet: bool = False,
) -> int:
    """Seed config.network at <config.etcd.prefix>/config; returns the seeder's exit code.

    The TLS paths are on the build host (config.etcd's are paths on the node). `endpoints`
    overrides config.etcd.endpoints, `api` the choice made from config.flannel.version.
    Messages go to stderr, as on a node.
    """
    return seeder().run(
        list(endpoints or config.etcd.endpoints),
        network_json(config),
        quiet=quiet,
        prefix=config.etcd.prefix,
        api=api or api_for(config),
        cacert=_str(cacert),
        cert=_str(cert),
        key=_str(key),
        force=force,
        deadline=deadline,
        timeout=timeout,
        source=f"[network] in {config.source}",
    )


def _str(path: StrPath | None) -> str | None:
    return None if path is None else str(path)
