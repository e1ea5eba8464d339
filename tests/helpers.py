"""Helpers shared by the test modules: plain functions and classes (fixtures live in the
conftest.py files). No test module imports from another test module or from a conftest."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pymysql
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, func, insert, make_url, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from pedidos.orders.invariants import Ledger, take_ledger
from pedidos.orders.processor import Answer, PedidoProcessor
from pedidos.orders.solicitacoes import record_solicitacao
from pedidos.orders.transaction import (
    ItemRequest,
    PedidoRequest,
    PedidoResult,
    Settled,
    Work,
    place_pedidos,
)
from pedidos.runtime import Runtime
from pedidos.storage.engine import make_sessions
from pedidos.storage.models import Base, Cliente, Produto, Solicitacao
from pedidos.web.devserver import ProblemRequestHandler

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = "application/problem+json"

# --- Databases --------------------------------------------------------------------------------

MARIADB_URL = os.environ.get(
    "PEDIDOS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/pedidos_test?charset=utf8mb4"
)


def sibling_database(suffix: str) -> str:
    """A database beside the test database, named after it, so that two checkouts that set
    different PEDIDOS_TEST_MARIADB_URL values never share one."""
    parsed = make_url(MARIADB_URL)
    return parsed.set(database=f"{parsed.database}_{suffix}").render_as_string(False)


def recreate_mariadb_database(url: str) -> None:
    parsed = make_url(url)
    server = create_engine(parsed.set(database=""), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{parsed.database}`"))
            connection.execute(text(f"CREATE DATABASE `{parsed.database}` CHARACTER SET utf8mb4"))
    finally:
        server.dispose()


def mysql_error(
    code: int, invalidated: bool = False, statement: str = "UPDATE ...", message: str = "x"
) -> OperationalError:
    """The error SQLAlchemy raises when MariaDB answers `code` (or the connection drops)."""
    return OperationalError(
        statement,
        {},
        pymysql.err.OperationalError(code, message),
        connection_invalidated=invalidated,
    )


def lost_connection() -> OperationalError:
    """The connection dropped during a COMMIT: whether it landed is unknown."""
    return mysql_error(2013, invalidated=True, statement="COMMIT", message="Lost connection")


# --- Rows -------------------------------------------------------------------------------------


@dataclass
class Store:
    """Shortcuts to arrange rows and read them back, each in its own transaction."""

    sessions: sessionmaker[Session]

    def cliente(self, saldo: str, nome: str = "Cliente Teste") -> int:
        with self.sessions.begin() as session:
            cliente = Cliente(nome=nome, saldo=Decimal(saldo))
            session.add(cliente)
            session.flush()
            return cliente.id

    def produto(self, preco: str, estoque: int, nome: str = "Produto Teste") -> int:
        with self.sessions.begin() as session:
            produto = Produto(nome=nome, preco=Decimal(preco), estoque=estoque)
            session.add(produto)
            session.flush()
            return produto.id

    def saldo(self, cliente_id: int) -> Decimal:
        with self.sessions.begin() as session:
            return session.execute(
                select(Cliente.saldo).where(Cliente.id == cliente_id)
            ).scalar_one()

    def estoque(self, produto_id: int) -> int:
        with self.sessions.begin() as session:
            return session.execute(
                select(Produto.estoque).where(Produto.id == produto_id)
            ).scalar_one()

    def count(self, model: type[Base]) -> int:
        with self.sessions.begin() as session:
            return session.execute(select(func.count()).select_from(model)).scalar_one()

    def ledger(self) -> Ledger:
        with self.sessions.begin() as session:
            return take_ledger(session)

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, in key order: compared before and after to prove that
        nothing changed. A test that expects a table to change says so by comparing it apart."""
        with self.sessions.begin() as session:
            return {
                table.name: [
                    tuple(row)
                    for row in session.execute(
                        select(table).order_by(*table.primary_key.columns)
                    ).all()
                ]
                for table in Base.metadata.sorted_tables
            }


def seed_catalog(
    engine: Engine,
    clientes: int,
    saldo: str,
    estoques: list[int],
    preco: str = "7.50",
    tag: str | None = None,
) -> tuple[list[int], list[int]]:
    """Clientes with equal saldo and produtos with the given estoque; return their ids.

    Untagged, they are named "Cliente i" and "Produto i". A `tag` names them "<tag> i" so
    that a database that outlives the test (the cluster's) returns only this test's rows;
    the ids need not be consecutive (on Galera they step by the cluster size)."""
    cliente_name, produto_name = (tag, tag) if tag else ("Cliente", "Produto")
    with engine.begin() as connection:
        connection.execute(
            insert(Cliente),
            [{"nome": f"{cliente_name} {i}", "saldo": Decimal(saldo)} for i in range(clientes)],
        )
        connection.execute(
            insert(Produto),
            [
                {"nome": f"{produto_name} {i}", "preco": Decimal(preco), "estoque": e}
                for i, e in enumerate(estoques)
            ],
        )
        return (
            list(
                connection.execute(
                    select(Cliente.id)
                    .where(Cliente.nome.like(f"{cliente_name} %"))
                    .order_by(Cliente.id)
                ).scalars()
            ),
            list(
                connection.execute(
                    select(Produto.id)
                    .where(Produto.nome.like(f"{produto_name} %"))
                    .order_by(Produto.id)
                ).scalars()
            ),
        )


def ledger(engine: Engine) -> Ledger:
    with make_sessions(engine, read_only=True).begin() as session:
        return take_ledger(session)


# --- Orders -----------------------------------------------------------------------------------

MakeProcessor = Callable[..., PedidoProcessor]


def order_request(cliente: int, produto: int, quantidade: int = 1) -> PedidoRequest:
    """An order of one line, as the processor takes it."""
    return PedidoRequest(cliente, (ItemRequest(produto, quantidade),))


def order_body(cliente: int, produto: int, quantidade: int = 1) -> dict[str, Any]:
    """An order of one line, as POST /pedido takes it."""
    return {"cliente_id": cliente, "itens": [{"produto_id": produto, "quantidade": quantidade}]}


def held_until(release: threading.Event) -> Work:
    """Order work that waits for `release` (30 s at most) before placing the orders."""

    def held(session: Session, requests: Sequence[PedidoRequest]) -> list[Settled]:
        release.wait(timeout=30)
        return place_pedidos(session, requests)

    return held


def outcomes_of(answers: list[Answer[PedidoResult]]) -> list[PedidoResult | Exception]:
    """Wait for every order: its result, or the rejection or error it raised."""
    outcomes: list[PedidoResult | Exception] = []
    for answer in answers:
        try:
            outcomes.append(answer.result(timeout=60))
        except Exception as error:
            outcomes.append(error)
    return outcomes


def release_together(count: int, action: Callable[[int], T]) -> list[T | BaseException]:
    """Run action(0..count-1) on `count` threads released at once by a barrier."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T | BaseException:
        barrier.wait()
        try:
            return action(index)
        except BaseException as error:
            return error

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def record_request(
    sessions: sessionmaker[Session], request: PedidoRequest, grace: float = 0
) -> int:
    """Record a solicitacao as the API does before answering 202, without running it."""
    return record_solicitacao(sessions, request, None, grace=timedelta(seconds=grace))


def estado_of(sessions: sessionmaker[Session], solicitacao_id: int) -> str:
    with sessions.begin() as session:
        return session.execute(
            select(Solicitacao.estado).where(Solicitacao.id == solicitacao_id)
        ).scalar_one()


# --- The app and HTTP -------------------------------------------------------------------------


def runtime_of(app: Flask) -> Runtime:
    runtime: Runtime = app.extensions["pedidos"]
    return runtime


def post_pedido(client: FlaskClient, body: Any, **headers: str) -> Any:
    """POST /pedido with `body` as JSON (whatever it is, valid or not)."""
    return client.post(
        "/pedido", data=json.dumps(body), content_type="application/json", headers=headers
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve `app` with a real threaded HTTP server on a free loopback port; yield its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=ProblemRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until `condition()` holds; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if condition():
                return time.monotonic() - started
        except Exception:  # not up yet: keep polling
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def raw_request(
    url: str, data: bytes, timeout: float = 5.0, *, end_sending: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (then close the sending side if `end_sending`), read the whole
    answer: status, headers, body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(data)
        if end_sending:
            connection.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
                head, found, body = received.partition(b"\r\n\r\n")
                if found:
                    lines = head.decode("latin-1").split("\r\n")
                    headers = {
                        k.strip().lower(): v.strip()
                        for k, _, v in (line.partition(":") for line in lines[1:])
                    }
                    if len(body) >= int(headers.get("content-length", "-1")) >= 0:
                        break
        except (TimeoutError, ConnectionResetError):
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


# --- Chromium ---------------------------------------------------------------------------------

CHROMIUM = os.environ.get("PEDIDOS_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling home, which a closed network
# refuses; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Counted:
    """Counts requests in flight, as the runtime does for a drain (web.envelope.InFlight)."""

    def __init__(self) -> None:
        self.requests = 0

    def request_started(self) -> None:
        self.requests += 1

    def request_finished(self) -> None:
        self.requests -= 1


def worker_pids(server: int) -> set[int]:
    """The worker processes of a server (granian, gunicorn), from /proc: its children but
    the resource tracker that spawning servers start beside them."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            if parent == server and b"resource_tracker" not in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except (OSError, ValueError):
            continue
    return found
