"""The cluster fixture: deploy/cluster.sh brings up Galera, HAProxy and three instances in a
directory and on ports of the test run's own, and takes them down after the last test."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy import Engine, insert, select

from pedidos.storage.models import Cliente, Produto

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "cluster.sh"
PORT_BASE = int(os.environ.get("PEDIDOS_CLUSTER_PORT_BASE", "18100"))


# The instances run in production, which answers only to tokens: an admin token for the tests.
ADMIN_TOKEN = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Cluster:
    """Handles on the running cluster: its URLs, and the faults a test injects."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.http_url = f"http://127.0.0.1:{PORT_BASE}"
        self.env = {
            **os.environ,
            "CLUSTER_DIR": str(directory),
            "CLUSTER_PORT_BASE": str(PORT_BASE),
            "CLUSTER_SEED": "0",
            # Short leases, so that a killed instance's requests are taken over within seconds.
            "PEDIDOS_LEASE_SECONDS": "3",
            "PEDIDOS_RECOVERY_INTERVAL": "1",
            "PEDIDOS_WORKERS": "8",
            "PEDIDOS_ADMIN_TOKEN": ADMIN_TOKEN,
        }
        self.env.pop("FLASK_DEBUG", None)

    def script(self, *args: str) -> str:
        done = subprocess.run(
            ["bash", str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"cluster.sh {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def up(self, mode: str) -> None:
        self.script("up", mode)

    def node_url(self, node: int) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{PORT_BASE + 20 + node}/pedidos?charset=utf8mb4"

    def connect(self, node: int) -> pymysql.Connection[Any]:
        return pymysql.connect(
            host="127.0.0.1",
            port=PORT_BASE + 20 + node,
            user="root",
            database="pedidos",
            autocommit=True,
        )

    def pidfile(self, instance: int) -> Path:
        return self.directory / "run" / f"instance{instance}.pid"

    def pid(self, instance: int) -> int:
        return int(self.pidfile(instance).read_text())

    def live_instance_ports(self) -> list[int]:
        ports = []
        for instance in (1, 2, 3):
            try:
                os.kill(self.pid(instance), 0)
            except (OSError, ValueError):
                continue
            ports.append(PORT_BASE + instance)
        return ports

    def kill_instance(self, instance: int) -> None:
        """SIGKILL to the instance's whole process group: server and workers, mid-request."""
        pid = self.pid(instance)
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.05)

    def start_instance(self, instance: int) -> None:
        self.script("start-instance", str(instance))

    def stop_node(self, node: int) -> None:
        self.script("stop-node", str(node))

    def start_node(self, node: int) -> None:
        self.script("start-node", str(node))


def seed(
    engine: Engine, tag: str, clientes: int, saldo: str, estoques: list[int], preco: str
) -> tuple[list[int], list[int]]:
    """This test's own clientes and produtos (named after `tag`); return their ids, which on
    Galera step by the cluster size."""
    with engine.begin() as connection:
        connection.execute(
            insert(Cliente),
            [{"nome": f"{tag} {i}", "saldo": Decimal(saldo)} for i in range(clientes)],
        )
        connection.execute(
            insert(Produto),
            [
                {"nome": f"{tag} {i}", "preco": Decimal(preco), "estoque": e}
                for i, e in enumerate(estoques)
            ],
        )
        return (
            list(
                connection.execute(
                    select(Cliente.id).where(Cliente.nome.like(f"{tag} %")).order_by(Cliente.id)
                ).scalars()
            ),
            list(
                connection.execute(
                    select(Produto.id).where(Produto.nome.like(f"{tag} %")).order_by(Produto.id)
                ).scalars()
            ),
        )


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
