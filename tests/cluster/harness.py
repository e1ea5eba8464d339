"""Cluster tools: handles on the cluster deploy/cluster.sh runs, and the admin token its
instances answer to."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pymysql

from tests.helpers import ROOT, bearer

SCRIPT = ROOT / "deploy" / "cluster.sh"
PORT_BASE = int(os.environ.get("PEDIDOS_CLUSTER_PORT_BASE", "18100"))


# The instances run in production, which answers only to tokens: an admin token for the tests.
ADMIN_TOKEN = secrets.token_urlsafe(32)
AUTH = bearer(ADMIN_TOKEN)


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
