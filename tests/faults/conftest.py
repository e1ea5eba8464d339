"""Fault-suite fixtures: a fresh MariaDB database per test, service processes, figures."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from pedidos.orders.invariants import Ledger, missing_pedidos, take_ledger, violations
from pedidos.storage.engine import make_engine, make_sessions, upgrade_schema
from pedidos.storage.models import Cliente, Estado, Pedido, Produto, Solicitacao
from tests.conftest import recreate_mariadb_database, sibling_database
from tests.faults.harness import LoadResult, ServiceProcess

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "faults.json"


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


def _git(*args: str) -> str:
    root = RESULTS.parents[2]
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed and "tests/faults/" in report.nodeid:
        RUN.failed.append(report.nodeid.split("::")[-1])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RUN.guarantees and not RUN.failed:
        return
    RUN.guarantees.sort(key=lambda row: row["test"])
    terminalreporter.section("fault-injection figures")
    for row in RUN.guarantees:
        terminalreporter.write_line(f"{row['test']}: {row['figure']}")
    if os.environ.get("PEDIDOS_FAULTS_RESULTS"):
        results = {
            "commit": _git("rev-parse", "HEAD") or "unknown",
            # Uncommitted changes to tracked files (other than what this run writes): the
            # figures are then not those of `commit`.
            "dirty": bool(
                _git(
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                    "--",
                    ".",
                    ":!benchmarks/results/faults.json",
                    ":!docs/guarantees.md",
                )
            ),
            "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": round(time.time() - RUN.started, 1),
            # Others may share the machine: its load says how far the figures are from idle.
            "load_average": round(os.getloadavg()[1], 1),
            "failed": RUN.failed,
            "guarantees": RUN.guarantees,
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")


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
