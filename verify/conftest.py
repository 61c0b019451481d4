"""Options of the image checks (verify/test_image.py), which run on testinfra's own `host`
fixture: the host comes from testinfra's --hosts (docker://, ssh://, ...), the payload manifest
the image was built from from --payload-manifest. `python -m verify` passes both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--payload-manifest",
        type=Path,
        help="the payload manifest.json the image was built from (build/payload/<arch>/)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pristine: holds only before a node's first boot (machine-id, host keys, cloud-init "
        "state, keys); deselect with -m 'not pristine' on a booted VM or instance",
    )


@pytest.fixture(scope="session")
def payload_manifest(request: pytest.FixtureRequest) -> dict[str, Any]:
    path = request.config.getoption("--payload-manifest")
    if path is None:
        raise pytest.UsageError("the image checks need --payload-manifest build/payload/<arch>/...")
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"--payload-manifest {path}: {exc}") from None
