"""However the app is served, each serving process runs recovery; which MariaDB driver runs."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from pedidos.storage.engine import resolve_driver
from tests.helpers import (
    Store,
    estado_of,
    free_port,
    order_request,
    record_request,
    wait_until,
)


def test_gunicorn_serving_create_app_recovers_pending_requests(
    database_url: str, sessions: sessionmaker[Session], store: Store, tmp_path: Path
) -> None:
    cliente = store.cliente("10.00")
    produto = store.produto("1.00", 5)
    # Acknowledged with 202 by a process that died before running it.
    left_behind = record_request(sessions, order_request(cliente, produto))
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "PEDIDOS_RECOVERY_INTERVAL": "0.2"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "-k",
            "gthread",
            "--threads",
            "4",
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{port}",
            "pedidos:create_app()",
        ],
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        # A load balancer's health probe is this worker's first request.
        health = f"http://127.0.0.1:{port}/healthz"
        wait_until(lambda: httpx.get(health).status_code == 200, 30, "gunicorn start")
        wait_until(lambda: estado_of(sessions, left_behind) == "CONCLUIDO", 20, "recovery")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert store.estoque(produto) == 4
    assert store.saldo(cliente) == 9


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("mysql+pymysql://root@127.0.0.1/x", "mysql+pymysql"),
        ("mysql+mysqldb://root@127.0.0.1/x", "mysql+mysqldb"),
        ("mariadb+pymysql://root@127.0.0.1/x", "mariadb+pymysql"),
        ("sqlite:///x.sqlite3", "sqlite"),
    ],
)
def test_a_driver_named_in_the_url_is_kept(url: str, driver: str) -> None:
    assert resolve_driver(url).drivername == driver


@pytest.mark.parametrize("backend", ["mysql", "mariadb"])
def test_a_url_without_driver_gets_mysqlclient_when_installed_else_pymysql(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{backend}://root@127.0.0.1:3306/pedidos?charset=utf8mb4"
    installed = find_spec("MySQLdb") is not None
    assert resolve_driver(url).drivername == f"{backend}+{'mysqldb' if installed else 'pymysql'}"
    assert resolve_driver(url).query == {"charset": "utf8mb4"}
    # Where mysqlclient could not be built:
    monkeypatch.setitem(sys.modules, "MySQLdb", None)
    assert resolve_driver(url).drivername == f"{backend}+pymysql"


def test_the_production_entry_point_keeps_the_app_out_of_full_collections(
    tmp_path: Path,
) -> None:
    # A full collection walks every tracked object while the worker waits: the app's own
    # (modules, metadata, routes) are frozen once built, so that it walks only new ones.
    probe = "import gc, pedidos.wsgi; print(gc.get_freeze_count())"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'wsgi.sqlite3'}",
        "PEDIDOS_RECOVERY_INTERVAL": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert int(out.stdout) > 50_000, out.stdout
