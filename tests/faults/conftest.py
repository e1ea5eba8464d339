"""Fault-suite fixtures: a fresh MariaDB database per test, service processes, figures."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from pedidos.db import make_engine, make_sessions, upgrade_schema
from pedidos.invariants import Ledger, missing_pedidos, take_ledger, violations
from pedidos.models import PENDENTES, Cliente, Produto, Solicitacao
from tests.conftest import recreate_mariadb_database, sibling_database
from tests.faults.harness import LoadResult, ServiceProcess

FIGURES: list[str] = []
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "faults.json"


def report(figure: str) -> None:
    """Keep one line for the summary at the end of the run (and the README)."""
    FIGURES.append(figure)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    FIGURES.sort(key=lambda line: int(line.split(".")[0]))
    if not FIGURES:
        return
    terminalreporter.section("fault-injection figures")
    for line in FIGURES:
        terminalreporter.write_line(line)
    if os.environ.get("PEDIDOS_FAULTS_RESULTS"):
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(FIGURES, indent=2, ensure_ascii=False) + "\n")


@pytest.fixture
def fault_url(mariadb_url: str) -> str:
    """A fresh, migrated MariaDB database of its own for each fault test."""
    url = sibling_database("faults")
    recreate_mariadb_database(url)
    upgrade_schema(url)
    return url


@pytest.fixture
def fault_engine(fault_url: str) -> Iterator[Engine]:
    engine = make_engine(fault_url, pool_size=4)
    yield engine
    engine.dispose()


def seed_catalog(
    engine: Engine, clientes: int, saldo: str, estoques: list[int], preco: str = "7.50"
) -> tuple[list[int], list[int]]:
    """Clientes with equal saldo and produtos with the given estoque; return their ids."""
    with engine.begin() as connection:
        connection.execute(
            insert(Cliente),
            [{"nome": f"Cliente {i}", "saldo": Decimal(saldo)} for i in range(clientes)],
        )
        connection.execute(
            insert(Produto),
            [
                {"nome": f"Produto {i}", "preco": Decimal(preco), "estoque": e}
                for i, e in enumerate(estoques)
            ],
        )
        return (
            list(connection.execute(select(Cliente.id).order_by(Cliente.id)).scalars()),
            list(connection.execute(select(Produto.id).order_by(Produto.id)).scalars()),
        )


def ledger(engine: Engine) -> Ledger:
    with make_sessions(engine, read_only=True).begin() as session:
        return take_ledger(session)


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


def assert_nothing_lost(engine: Engine, before: Ledger, load: LoadResult) -> Ledger:
    """Every invariant, every 201 committed exactly once, every 202 settled exactly once."""
    after = ledger(engine)
    assert violations(before, after) == []
    with make_sessions(engine, read_only=True).begin() as session:
        assert missing_pedidos(session, load.created) == []
        assert len(set(load.created)) == len(load.created)
        if load.accepted:
            pending = session.execute(
                select(Solicitacao.id).where(
                    Solicitacao.id.in_(load.accepted), Solicitacao.estado.in_(PENDENTES)
                )
            ).all()
            assert pending == []
            settled = session.execute(
                select(Solicitacao.id).where(Solicitacao.id.in_(load.accepted))
            ).all()
            assert len(settled) == len(set(load.accepted))
    return after


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start `pedidos serve` processes; any still running are killed after the test."""
    started: list[ServiceProcess] = []

    def start(database_url: str, **settings: str) -> ServiceProcess:
        service = ServiceProcess(database_url, tmp_path / f"service-{len(started)}.log", **settings)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()
