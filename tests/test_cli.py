"""The `pedidos` commands through Flask's CLI test runner."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from flask import Flask
from sqlalchemy import func, select

from pedidos.cli import cli
from pedidos.models import Cliente, Produto, Solicitacao
from tests.conftest import Store


def invoke(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def count(store: Store, model: type[Cliente] | type[Produto]) -> int:
    with store.sessions.begin() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_init_db_is_idempotent(app: Flask) -> None:
    assert "schema is up to date" in invoke(app, "init-db")
    assert "schema is up to date" in invoke(app, "init-db")


def test_seed_creates_reset_and_skips(app: Flask, store: Store) -> None:
    assert "seeded 300 clientes and 40 produtos" in invoke(
        app, "seed", "--clientes", "300", "--produtos", "40", "--seed", "1"
    )
    assert (count(store, Cliente), count(store, Produto)) == (300, 40)
    assert "not seeding" in invoke(app, "seed", "--if-empty")
    assert app.test_client().post("/pedido").status_code in (201, 409)
    invoke(app, "seed", "--clientes", "7", "--produtos", "3", "--reset")
    assert (count(store, Cliente), count(store, Produto)) == (7, 3)
    # Orders, their requests and the counters go too: the ledger starts clean.
    after_reset = store.ledger()
    assert (after_reset.pedidos, after_reset.contadores) == (0, (0, 0, Decimal("0.00")))
    assert store.count(Solicitacao) == 0
    with store.sessions.begin() as session:
        nomes = session.execute(select(Cliente.nome)).scalars().all()
        precos = session.execute(select(Produto.preco)).scalars().all()
    assert all(len(nome.split()) == 3 for nome in nomes)
    assert all(p > 0 and p == p.quantize(p.__class__("0.01")) for p in precos)


def test_seed_rejects_negative_sizes(app: Flask) -> None:
    result = app.test_cli_runner().invoke(cli, ["seed", "--clientes", "-1"])
    assert result.exit_code == 2 and "Invalid value" in result.output


@pytest.mark.timeout(120)
def test_simulate_orders_over_http_and_verifies(app: Flask, live_server: str) -> None:
    invoke(app, "seed", "--clientes", "50", "--produtos", "10", "--seed", "2")

    output = invoke(
        app, "simulate", "--pedidos", "120", "--concorrencia", "12", "--url", live_server
    )

    assert "120 orders from 12 concurrent users" in output
    table = re.split(r"^-+$", output, flags=re.MULTILINE)[1]  # the summary under its rule
    rows = dict(line.strip().split(None, 1) for line in table.splitlines() if line.strip())
    assert rows["invariants"] == "OK"
    assert "p50: " in rows["latency_ms"] and "p99: " in rows["latency_ms"]
    assert "500" not in rows["outcomes"]


@pytest.mark.timeout(120)
def test_simulate_json_summary_adds_up(app: Flask, live_server: str) -> None:
    invoke(app, "seed", "--clientes", "20", "--produtos", "5", "--seed", "3")

    output = invoke(
        app, "simulate", "--pedidos", "40", "--concorrencia", "4", "--url", live_server, "--json"
    )

    summary = json.loads(output.strip().splitlines()[-1])
    assert summary["invariants"] == "OK"
    assert sum(summary["outcomes"].values()) == 40
    assert summary["committed"] == summary["outcomes"].get("201", 0)
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["max"]


def test_seed_json_summary(app: Flask) -> None:
    output = invoke(app, "seed", "--clientes", "12", "--produtos", "4", "--json")
    summary = json.loads(output.strip().splitlines()[-1])
    assert (summary["seeded"], summary["clientes"], summary["produtos"]) == (True, 12, 4)


def test_help_explains_the_commands(app: Flask) -> None:
    output = invoke(app, "--help")
    for command in ("init-db", "seed", "simulate", "serve", "bench"):
        assert command in output
    assert "pedidos simulate --pedidos 1000" in invoke(app, "simulate", "--help")
