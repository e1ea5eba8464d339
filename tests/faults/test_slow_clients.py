"""Slow clients against the production server: 200 connections trickling bytes must not stop
healthy requests (a health probe, an order) from being answered within a second.

granian holds clients that trickle their headers or a body itself, and so does the buffering
proxy of the documented deployment (deploy/haproxy-single.cfg.in). A control run against
gunicorn's threaded workers shows that the harness sees the outage."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tests.faults.harness import ProductionService, report
from tests.helpers import ROOT, free_port, order_body, seed_catalog, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.mariadb, pytest.mark.timeout(180)]

SLOW_CLIENTS = 200
TRICKLE_SECONDS = 2.0  # each connection sends one byte this often
PROBE_TIMEOUT = 1.0
# A request whose headers never end: the attacker sends it one byte at a time.
HEADERS = (
    b"POST /pedido HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    + b"X-Padding: "
    + b"a" * 4096
)
# Whole headers at once, then a body that never ends.
BODY = (
    b"POST /pedido HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    + b"Content-Length: 4096\r\n\r\n"
    + b" " * 4096
)
BODY_START = BODY.index(b"\r\n\r\n") + 4


@dataclass
class SlowClients:
    """`count` connections, each sending one more byte every TRICKLE_SECONDS; a connection
    the server closes is opened again, as an attacker would."""

    port: int
    count: int
    request: bytes = HEADERS
    at_once: int = 1  # bytes sent when a connection opens, before the trickle
    reopened: int = 0
    most_open: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _open(self) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        conn.setblocking(False)
        conn.send(self.request[: self.at_once])
        return conn

    def run(self) -> None:
        conns = [self._open() for _ in range(self.count)]
        sent = self.at_once
        while not self._stop.wait(TRICKLE_SECONDS):
            for index, conn in enumerate(conns):
                try:
                    conn.send(self.request[sent : sent + 1])
                except OSError:  # closed by the server: come back
                    conn.close()
                    conns[index] = self._open()
                    self.reopened += 1
            sent += 1
            self.most_open = max(self.most_open, len(conns))
        for conn in conns:
            conn.close()

    @contextlib.contextmanager
    def trickling(self) -> Iterator[SlowClients]:
        thread = threading.Thread(target=self.run, name="slow-clients")
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=30)


@dataclass
class Probes:
    answered: int = 0
    failed: list[str] = field(default_factory=list)
    slowest: float = 0.0


def probe(
    url: str, seconds: float, cliente: int, produto: int, auth: dict[str, str] | None = None
) -> Probes:
    """A health probe and an order every half second, each on a new connection."""
    result = Probes()
    order = order_body(cliente, produto)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for method, path, body, expected in (
            ("GET", "/healthz", None, 200),
            ("POST", "/pedido", order, 201),
        ):
            started = time.monotonic()
            try:
                response = httpx.request(
                    method, f"{url}{path}", json=body, headers=auth, timeout=PROBE_TIMEOUT
                )
                status = str(response.status_code)
            except httpx.HTTPError as error:
                status = type(error).__name__
            took = time.monotonic() - started
            result.slowest = max(result.slowest, took)
            if status == str(expected) and took <= PROBE_TIMEOUT:
                result.answered += 1
            else:
                result.failed.append(f"{method} {path}: {status} after {took:.2f} s")
        time.sleep(0.5)
    return result


def test_production_server_answers_while_200_slow_clients_trickle(
    fault_engine: Engine, fault_url: str, tmp_path: Path
) -> None:
    clientes, produtos = seed_catalog(fault_engine, 10, "100000.00", [100_000])
    service = ProductionService(fault_url, tmp_path / "service.log").start()
    try:
        slow = SlowClients(service.port, SLOW_CLIENTS)
        with slow.trickling():
            time.sleep(TRICKLE_SECONDS * 1.5)  # every slow connection has begun its request
            probes = probe(service.url, 18, clientes[0], produtos[0], service.auth)
    finally:
        service.stop()

    assert slow.most_open == SLOW_CLIENTS
    assert probes.failed == [], probes.failed
    assert probes.answered >= 20
    report(
        "Slow clients cannot keep a healthy request from an answer within a second",
        f"{SLOW_CLIENTS} slow clients (a header byte every {TRICKLE_SECONDS:.0f} s, "
        f"~20 s) against `pedidos serve --production`: {probes.answered} health probes and "
        f"orders answered, slowest {probes.slowest * 1000:.0f} ms, none failed; "
        f"{slow.reopened} slow connections cut by the server's header timeout and reopened",
    )


def test_control_gunicorn_threads_are_taken_by_slow_clients(
    fault_engine: Engine, fault_url: str, tmp_path: Path
) -> None:
    clientes, produtos = seed_catalog(fault_engine, 10, "100000.00", [100_000])
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": fault_url,
        # One worker: with two, the kernel could hand one of them fewer slow connections than
        # it has threads, and the probes it accepted were answered.
        "PEDIDOS_GUNICORN_WORKERS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    with (tmp_path / "gunicorn.log").open("wb") as log:
        config = str(ROOT / "gunicorn.conf.py")
        server = subprocess.Popen(
            # Far fewer threads than slow clients (4 against 200), so that every thread stays
            # held: the control shows that the harness sees a thread-per-connection server stop
            # answering.
            [
                gunicorn,
                "-c",
                config,
                "--threads",
                "4",
                "-b",
                f"127.0.0.1:{port}",
                "pedidos.wsgi:app",
            ],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, 30, "start")
            with SlowClients(port, SLOW_CLIENTS).trickling():
                time.sleep(TRICKLE_SECONDS * 1.5)
                probes = probe(url, 6, clientes[0], produtos[0])
        finally:
            os.killpg(server.pid, signal.SIGKILL)  # the master and its workers
            server.wait(timeout=30)

    # Every thread held by a slow client: each probe times out.
    assert probes.answered == 0, probes
    assert len(probes.failed) >= 4, probes


@contextlib.contextmanager
def buffering_proxy(app_port: int, tmp_path: Path) -> Iterator[int]:
    """HAProxy with the deployment's buffering configuration in front of `app_port`."""
    port = free_port()
    template = ROOT / "deploy" / "haproxy-single.cfg.in"
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        template.read_text().replace("@HTTP_PORT@", str(port)).replace("@APP_PORT@", str(app_port))
    )
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    with (tmp_path / "haproxy.log").open("wb") as log:
        proxy = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=log, stderr=log)
        try:
            wait_until(
                lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200,
                30,
                "proxy start",
            )
            yield port
        finally:
            proxy.terminate()
            proxy.wait(timeout=30)


def test_clients_trickling_a_body_take_no_server_thread(
    fault_engine: Engine, fault_url: str, tmp_path: Path
) -> None:
    clientes, produtos = seed_catalog(fault_engine, 10, "100000.00", [100_000])
    service = ProductionService(fault_url, tmp_path / "service.log").start()
    try:
        with SlowClients(service.port, SLOW_CLIENTS, BODY, BODY_START).trickling():
            time.sleep(TRICKLE_SECONDS * 1.5)
            direct = probe(service.url, 8, clientes[0], produtos[0], service.auth)
        with buffering_proxy(service.port, tmp_path) as port:
            slow = SlowClients(port, SLOW_CLIENTS, BODY, BODY_START)
            with slow.trickling():
                time.sleep(TRICKLE_SECONDS * 1.5)
                proxied = probe(
                    f"http://127.0.0.1:{port}", 14, clientes[0], produtos[0], service.auth
                )
    finally:
        service.stop()

    assert direct.failed == [] and proxied.failed == [], (direct.failed, proxied.failed)
    assert direct.answered >= 10 and proxied.answered >= 16
    report(
        "Clients that trickle a body hold no server thread, with or without the proxy",
        f"{SLOW_CLIENTS} clients trickling a 4 KiB body (a byte every "
        f"{TRICKLE_SECONDS:.0f} s): straight at the production server {direct.answered} "
        f"probes answered, slowest {direct.slowest * 1000:.0f} ms; behind HAProxy with "
        f"deploy/haproxy-single.cfg.in {proxied.answered} answered, slowest "
        f"{proxied.slowest * 1000:.0f} ms; none failed",
    )
