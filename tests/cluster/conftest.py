"""The cluster fixture: deploy/cluster.sh brings up Galera, HAProxy and three instances in a
directory and on ports of the test run's own, and takes them down after the last test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster


def _cannot_run() -> str | None:
    if os.geteuid() == 0:
        return None  # deploy/cluster.sh installs what is missing
    needed = {"haproxy": shutil.which("haproxy"), "galera-4": Path("/usr/lib/galera").exists()}
    missing = [name for name, found in needed.items() if not found]
    return f"not root and missing {', '.join(missing)}" if missing else None


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    reason = _cannot_run()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the cluster cannot run: {reason}")
        pytest.skip(f"the cluster cannot run: {reason}")
    # Outside pytest's private temp folder: the database nodes run as the mysql user.
    directory = Path(tempfile.mkdtemp(prefix="pedidos-cluster-"))
    directory.chmod(0o755)
    cluster = Cluster(directory)
    try:
        cluster.up("single")
        yield cluster
    finally:
        cluster.script("clean")
