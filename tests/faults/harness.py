"""Fault-injection tools: the service as a real process, HTTP load, a private MariaDB, the
conservation check after a load, and the figures a run reports."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Self

import httpx
from sqlalchemy import Engine, create_engine, func, select, text

from pedidos.orders.invariants import Ledger, missing_pedidos, violations
from pedidos.storage.engine import make_sessions
from pedidos.storage.models import PENDENTES, Estado, Pedido, Solicitacao
from tests.helpers import bearer, free_port, ledger, wait_until

Request = tuple[dict[str, Any] | None, dict[str, str]]


@dataclass
class Run:
    """This run's figures, one per guarantee, and what it ran on."""

    started: float = field(default_factory=time.time)
    guarantees: list[dict[str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


RUN = Run()


def report(promise: str, figure: str) -> None:
    """Record the calling test's promise and the figure this run measured for it."""
    test = os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].split(" ")[0]
    RUN.guarantees.append({"test": test, "promise": promise, "figure": figure})


class ServiceProcess:
    """`pedidos serve` in its own process, as an operator would run it."""

    serve_options: tuple[str, ...] = ()

    def __init__(self, database_url: str, log_path: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DATABASE_URL": database_url, **settings}
        self.env.pop("FLASK_DEBUG", None)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    def start(self) -> Self:
        command = [
            str(Path(sys.executable).with_name("pedidos")),
            "serve",
            "--port",
            str(self.port),
            *self.serve_options,
        ]
        self._log = self.log_path.open("ab")
        # Its own process group: stop() also takes the workers of `serve --production`.
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self._log, stderr=self._log, start_new_session=True
        )
        wait_until(
            lambda: httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200,
            30,
            "service start",
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def peak_rss_mib(self) -> float:
        """Peak resident memory of the process so far (VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc status")

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None


class ProductionService(ServiceProcess):
    """`pedidos serve --production` (granian) with two worker processes. Production answers
    only to tokens: `auth` holds the headers of an admin token made for this service."""

    serve_options = ("--production", "--workers", "2")

    def __init__(self, database_url: str, log_path: Path, **settings: str) -> None:
        token = secrets.token_urlsafe(32)
        super().__init__(database_url, log_path, PEDIDOS_ADMIN_TOKEN=token, **settings)
        self.auth = bearer(token)


StartService = Callable[..., ServiceProcess]


@dataclass
class LoadResult:
    """What the clients saw: statuses, and the ids the service acknowledged."""

    statuses: Counter[str] = field(default_factory=Counter)
    created: list[int] = field(default_factory=list)  # 201: committed
    accepted: list[int] = field(default_factory=list)  # 202: recorded durably
    retry_after_missing: int = 0
    problems: Counter[str] = field(default_factory=Counter)  # "503 sobrecarga" and the like
    answered_at: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, status)
    slowest: float = 0.0  # the longest single request, seconds
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        """5xx answers other than the 503 that overload and shutdown give on purpose."""
        return sum(
            n for status, n in self.statuses.items() if status.startswith("5") and status != "503"
        )

    @property
    def connection_errors(self) -> int:
        """Requests that got no HTTP answer at all (refused, reset, timed out)."""
        return self.statuses["connection_error"]

    @property
    def failures(self) -> int:
        """Server errors and requests left without an answer: what a client cannot act on."""
        return self.server_errors + self.connection_errors

    def between(self, start: float, end: float) -> Counter[str]:
        """Statuses of the answers that arrived in [start, end) (monotonic seconds)."""
        with self.lock:
            return Counter(status for at, status in self.answered_at if start <= at < end)

    def record(self, response: httpx.Response | None, seconds: float = 0.0) -> None:
        with self.lock:
            self.slowest = max(self.slowest, seconds)
            if response is None:
                self.statuses["connection_error"] += 1
                self.answered_at.append((time.monotonic(), "connection_error"))
                return
            status = response.status_code
            self.statuses[str(status)] += 1
            self.answered_at.append((time.monotonic(), str(status)))
            if response.headers.get("Content-Type", "").startswith("application/problem+json"):
                slug = response.json()["type"].removeprefix("urn:pedidos:problem:")
                self.problems[f"{status} {slug}"] += 1
            if status in (201, 202):
                (self.created if status == 201 else self.accepted).append(response.json()["id"])
            if status == 503 and "Retry-After" not in response.headers:
                self.retry_after_missing += 1


def run_load(
    url: str,
    count: int,
    concurrency: int,
    make_request: Callable[[int], Request],
    result: LoadResult | None = None,
    retry: Callable[[httpx.Response | None], bool] = lambda _response: False,
    timeout: float = 60.0,
) -> LoadResult:
    """Send `count` POST /pedido from `concurrency` clients; `retry` says when a client sends
    the same request again (it must carry an Idempotency-Key for that to be safe)."""
    result = result or LoadResult()
    next_index = iter(range(count))
    take = threading.Lock()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    def client_loop(client: httpx.Client) -> None:
        while True:
            with take:
                index = next(next_index, None)
            if index is None:
                return
            body, headers = make_request(index)
            for attempt in range(40):
                sent = time.monotonic()
                try:
                    response: httpx.Response | None = client.post(
                        "/pedido", json=body, headers=headers
                    )
                except httpx.HTTPError:
                    response = None
                seconds = time.monotonic() - sent
                if not retry(response):
                    break
                time.sleep(min(0.5, 0.05 * (attempt + 1)))
            result.record(response, seconds)

    started = time.monotonic()
    with (
        httpx.Client(base_url=url, timeout=timeout, limits=limits) as client,
        ThreadPoolExecutor(concurrency) as clients,
    ):
        for running in [clients.submit(client_loop, client) for _ in range(concurrency)]:
            running.result()
    result.seconds = time.monotonic() - started
    return result


class PrivateMariaDB:
    """A MariaDB server of the test's own, on its own port and data directory, that the test
    may stop and start at will."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.url = f"mysql+pymysql://root@127.0.0.1:{self.port}/pedidos?charset=utf8mb4"
        self.process: subprocess.Popen[bytes] | None = None

    def install(self) -> PrivateMariaDB:
        installer = shutil.which("mariadb-install-db") or "mariadb-install-db"
        subprocess.run(
            [
                installer,
                "--no-defaults",
                f"--datadir={self.base / 'data'}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )
        return self

    def start(self) -> float:
        """Start the server; return the seconds it took to answer."""
        self.process = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={self.base / 'data'}",
                f"--socket={self.base / 'mysqld.sock'}",
                f"--pid-file={self.base / 'mysqld.pid'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",  # loopback only, test data only
                "--innodb-buffer-pool-size=64M",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = create_engine(self.url.replace("/pedidos?", "/?"), isolation_level="AUTOCOMMIT")
        try:

            def answers() -> bool:
                with server.connect() as connection:
                    connection.execute(text("CREATE DATABASE IF NOT EXISTS pedidos"))
                return True

            return wait_until(answers, 60, "private MariaDB start")
        finally:
            server.dispose()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


def order_factory(
    clientes: list[int], produtos: list[int], seed: int = 1, **headers: str
) -> Callable[[int], tuple[dict[str, Any], dict[str, str]]]:
    """Random one- or two-line orders over the given rows, reproducible by index."""

    def make(index: int) -> tuple[dict[str, Any], dict[str, str]]:
        rng = random.Random(seed * 1_000_003 + index)
        chosen = rng.sample(produtos, min(len(produtos), rng.randint(1, 2)))
        body = {
            "cliente_id": rng.choice(clientes),
            "itens": [{"produto_id": p, "quantidade": rng.randint(1, 2)} for p in chosen],
        }
        return body, dict(headers)

    return make


def mixed_orders(
    clientes: list[int], produtos: list[int], **headers: str
) -> Callable[[int], tuple[dict[str, Any], dict[str, str]]]:
    """Orders of which one in four asks to be answered 202 (`Prefer: respond-async`) and the
    others wait for their outcome: the acknowledgements a fault must not lose, both kinds."""
    sync = order_factory(clientes, produtos, 1, **headers)
    durable = order_factory(clientes, produtos, seed=4, Prefer="respond-async", **headers)

    def make(index: int) -> tuple[dict[str, Any], dict[str, str]]:
        return (durable if index % 4 == 0 else sync)(index)

    return make


def load_in_background(run: Callable[[], LoadResult]) -> tuple[threading.Thread, list[LoadResult]]:
    done: list[LoadResult] = []
    thread = threading.Thread(target=lambda: done.append(run()), daemon=True)
    thread.start()
    return thread, done


def pending_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            select(func.count()).select_from(Solicitacao).where(Solicitacao.estado.in_(PENDENTES))
        ).scalar_one()


def assert_nothing_lost(engine: Engine, before: Ledger, load: LoadResult) -> Ledger:
    """Every invariant holds; every 201 is one committed order; every 202 is settled exactly
    once: CONCLUIDO with its one order or REJEITADO with none (never pending, never ERRO)."""
    after = ledger(engine)
    assert violations(before, after) == []
    duplicated = {i: n for i, n in Counter(load.created + load.accepted).items() if n > 1}
    assert duplicated == {}, f"one id acknowledged more than once: {duplicated}"
    with make_sessions(engine, read_only=True).begin() as session:
        assert missing_pedidos(session, load.created) == []
        if load.accepted:
            estados = Counter(
                session.execute(
                    select(Solicitacao.estado).where(Solicitacao.id.in_(load.accepted))
                ).scalars()
            )
            settled = estados[Estado.CONCLUIDO] + estados[Estado.REJEITADO]
            assert settled == len(load.accepted), dict(estados)
            orders = session.execute(
                select(Solicitacao.estado, func.count())
                .select_from(Pedido)
                .join(Solicitacao, Solicitacao.id == Pedido.id)
                .where(Pedido.id.in_(load.accepted))
                .group_by(Solicitacao.estado)
            ).all()
            concluidos = estados[Estado.CONCLUIDO]
            assert dict(orders) == ({Estado.CONCLUIDO: concluidos} if concluidos else {}), orders
    return after
