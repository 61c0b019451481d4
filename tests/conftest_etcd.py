"""pytest fixtures for a real 3-member TLS etcd cluster (see etcd_cluster.py).

tests/conftest.py loads them (pytest_plugins). One cluster per session; `etcd` also restarts
members a test stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .etcd_cluster import EtcdCluster


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(Path(tmp_path_factory.mktemp("etcd")))
    with cluster:
        yield cluster


@pytest.fixture
def etcd(etcd_cluster: EtcdCluster) -> Iterator[EtcdCluster]:
    """The session cluster with every member up and healthy, before and after the test."""
    etcd_cluster.ensure_running()
    yield etcd_cluster
    etcd_cluster.ensure_running()
