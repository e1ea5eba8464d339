"""Fixtures: a migrated SQLite file and a migrated MariaDB database, emptied before each test."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, func, make_url, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from pedidos.app import create_app
from pedidos.config import Settings
from pedidos.orders.invariants import Ledger, take_ledger
from pedidos.orders.processor import PedidoProcessor
from pedidos.orders.transaction import PedidoResult, Work, place_pedidos
from pedidos.runtime import Runtime
from pedidos.sim.seed import reset
from pedidos.storage.engine import make_engine, make_sessions, upgrade_schema
from pedidos.storage.models import Base, Cliente, ItemPedido, Pedido, Produto, Solicitacao
from pedidos.web.devserver import ProblemRequestHandler

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


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    """A fresh, migrated MariaDB database; under CI=true an unreachable server fails the run."""
    try:
        recreate_mariadb_database(MARIADB_URL)
    except OperationalError as error:
        message = f"MariaDB is unreachable at {make_url(MARIADB_URL)!r}: {error.orig}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI=true: MariaDB tests must run)")
        pytest.skip(message)
    upgrade_schema(MARIADB_URL)
    return MARIADB_URL


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'pedidos.sqlite3'}"
    upgrade_schema(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test that takes this runs once on SQLite and once on MariaDB."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=48)
    reset(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessions(engine)


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

    def count(self, model: type[Pedido] | type[ItemPedido] | type[Solicitacao]) -> int:
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


@pytest.fixture
def store(sessions: sessionmaker[Session]) -> Store:
    return Store(sessions)


def outcomes_of(futures: list[Future[PedidoResult]]) -> list[PedidoResult | Exception]:
    """Wait for every order: its result, or the rejection or error it raised."""
    outcomes: list[PedidoResult | Exception] = []
    for future in futures:
        try:
            outcomes.append(future.result(timeout=60))
        except Exception as error:
            outcomes.append(error)
    return outcomes


@pytest.fixture
def make_processor(
    sessions: sessionmaker[Session],
) -> Iterator[Callable[..., PedidoProcessor]]:
    """Build processors on the test's database; all are shut down after the test."""
    built: list[PedidoProcessor] = []

    def build(
        work: Work = place_pedidos,
        workers: int = 16,
        queue_size: int = 256,
        max_retries: int = 5,
        batch_size: int = 1,
    ) -> PedidoProcessor:
        processor = PedidoProcessor(
            sessions,
            workers=workers,
            queue_size=queue_size,
            max_retries=max_retries,
            work=work,
            batch_size=batch_size,
        )
        built.append(processor)
        return processor

    yield build
    for processor in built:
        processor.shutdown()


@pytest.fixture
def app(engine: Engine, database_url: str) -> Iterator[Flask]:
    """The real app on the test's (already emptied) database."""
    settings = Settings(database_url=database_url, workers=8, queue_size=64, recovery_interval=0)
    app = create_app(settings)
    yield app
    runtime: Runtime = app.extensions["pedidos"]
    runtime.close()


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


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    with serving(app) as url:
        yield url
