"""The `pedidos` commands, run in-process on the test's app."""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import func, make_url, select

from pedidos.app import create_app
from pedidos.cli import CliState, cli
from pedidos.cli.diagnosis import SchemaNotCurrent
from pedidos.config import Settings
from pedidos.orders.invariants import violations
from pedidos.storage.engine import alembic_config, newest_revision, upgrade_schema
from pedidos.storage.models import Cliente, ItemPedido, Pedido, Produto, Solicitacao, money_sum
from tests.helpers import Store, runtime_of


def run(app: Flask, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=CliState(app=app))


def invoke(app: Flask, *args: str) -> str:
    result = run(app, *args)
    assert result.exit_code == 0, result.output
    return result.output


def test_init_db_is_idempotent(app: Flask) -> None:
    assert "already current at revision" in invoke(app, "init-db")
    assert "already current at revision" in invoke(app, "init-db")


def test_seed_creates_reset_and_skips(app: Flask, store: Store) -> None:
    assert "seeded 300 clientes, 40 produtos and 0 pedidos" in invoke(
        app, "seed", "--clientes", "300", "--produtos", "40", "--seed", "1"
    )
    assert (store.count(Cliente), store.count(Produto)) == (300, 40)
    assert "not seeding" in invoke(app, "seed", "--if-empty")
    wait = {"Prefer": "return=representation"}
    assert app.test_client().post("/pedido", headers=wait).status_code in (201, 409)
    invoke(app, "seed", "--clientes", "7", "--produtos", "3", "--reset")
    assert (store.count(Cliente), store.count(Produto)) == (7, 3)
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
    result = run(app, "seed", "--clientes", "-1")
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
    for name in ("init-db", "seed", "simulate", "serve", "bench"):
        assert name in output
    assert "pedidos simulate --pedidos 1000" in invoke(app, "simulate", "--help")


def test_seed_pedidos_keeps_every_invariant(app: Flask, store: Store) -> None:
    invoke(app, "seed", "--clientes", "1000", "--produtos", "50")
    before = store.ledger()
    output = invoke(app, "seed", "--clientes", "0", "--produtos", "0", "--pedidos", "500", "--json")
    summary = json.loads(output.strip().splitlines()[-1])
    after = store.ledger()

    assert 400 <= summary["pedidos"] <= 500  # unaffordable picks are skipped, not forced
    assert after.pedidos == summary["pedidos"]
    # Money and stock only moved: what clientes lost and estoque lost equals what was sold.
    assert violations(before, after) == []
    with store.sessions.begin() as session:
        vendidos, receita = session.execute(
            select(func.sum(Produto.vendidos), money_sum(Produto.receita))
        ).one()
        compras, gasto = session.execute(
            select(func.sum(Cliente.compras), money_sum(Cliente.gasto))
        ).one()
        span = session.execute(select(func.min(Pedido.criado_em), func.max(Pedido.criado_em))).one()
        by_hand = session.execute(
            select(func.count()).where(
                Produto.vendidos
                != select(func.coalesce(func.sum(ItemPedido.quantidade), 0))
                .where(ItemPedido.produto_id == Produto.id)
                .scalar_subquery()
            )
        ).scalar_one()
    assert (int(vendidos), receita) == (after.unidades, after.vendido)
    assert (int(compras), gasto) == (after.pedidos, after.vendido)
    assert by_hand == 0
    assert span[1] - span[0] > timedelta(days=5)  # spread over the last 7 days
    # The report pages through them, names included.
    page = app.test_client().get("/relatorio?limit=2").get_json()
    assert page["pedidos"][0]["cliente_nome"] and page["pedidos"][0]["itens"][0]["produto_nome"]


def test_help_has_no_flask_options_and_every_option_is_explained(app: Flask) -> None:
    output = invoke(app, "--help")
    assert "--env-file" not in output and "--app" not in output and " run " not in output
    for name in ("init-db", "seed", "simulate", "serve"):
        help_text = invoke(app, name, "--help")
        options = re.findall(r"^  (-[-\w, ]+?)(?:  +(.*))?$", help_text, flags=re.MULTILINE)
        assert options, help_text
        for option, text in options:
            assert text.strip(), f"{name} {option} has no help"
    assert re.search(r"pedidos, version \d+\.\d+", invoke(app, "--version"))


@pytest.fixture
def isolated_logging() -> Iterator[None]:
    """`serve` configures the process's loggers; put them back for the tests that follow."""
    loggers = [logging.getLogger(name) for name in ("pedidos", "werkzeug", "")]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    yield
    for lg, (handlers, propagate, level) in zip(loggers, saved, strict=True):
        lg.handlers[:] = handlers
        lg.propagate, lg.level = propagate, level


@pytest.mark.usefixtures("isolated_logging")
def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    app = create_app(Settings(database_url=url, recovery_interval=0))
    try:
        result = run(app, "serve", "--port", "0")
    finally:
        runtime_of(app).close()
    assert result.exit_code == 2
    assert "refusing to start" in result.output and "pedidos init-db" in result.output
    assert "Traceback" not in result.output


def test_init_db_says_what_it_did(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    command.upgrade(alembic_config(url), "0002")
    app = create_app(Settings(database_url=url, recovery_interval=0))
    try:
        newest = newest_revision()
        assert f"upgraded from revision 0002 to {newest}" in invoke(app, "init-db")
        assert f"already current at revision {newest}" in invoke(app, "init-db")
    finally:
        runtime_of(app).close()
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    result = CliRunner().invoke(cli, ["init-db"], env={"DATABASE_URL": fresh})
    assert (
        result.exit_code == 0
        and f"created the schema (revision {newest_revision()})" in result.output
    )


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        ("nonsense", "DATABASE_URL is not a database URL"),
        ("postgresql://u@127.0.0.1/x", "does not support"),
        ("mariadb+mariadbconnector://root@127.0.0.1/x", "pip install mariadb"),
        ("mysql+pymysql://root@127.0.0.1:1/x", "no database server answers at 127.0.0.1:1"),
    ],
)
def test_database_mistakes_are_one_or_two_lines(database_url: str, expected: str) -> None:
    result = CliRunner().invoke(cli, ["seed"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 1
    assert expected in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2


def test_unmigrated_sqlite_says_to_run_init_db(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never.sqlite3'}"
    result = CliRunner().invoke(cli, ["seed"], env={"DATABASE_URL": url})
    assert result.exit_code == 1
    assert "has no schema" in result.output and "pedidos init-db" in result.output
    debug = CliRunner().invoke(cli, ["--debug", "seed"], env={"DATABASE_URL": url})
    assert debug.exit_code == 1 and isinstance(debug.exception, SchemaNotCurrent)


@pytest.mark.mariadb
def test_missing_mariadb_database_says_create_database(mariadb_url: str) -> None:
    missing = make_url(mariadb_url).set(database="pedidos_nao_existe_wt").render_as_string(False)
    result = CliRunner().invoke(cli, ["init-db"], env={"DATABASE_URL": missing})
    assert result.exit_code == 1
    assert "CREATE DATABASE pedidos_nao_existe_wt" in result.output
    assert "Traceback" not in result.output


def test_simulate_fails_when_no_server_answers(app: Flask) -> None:
    result = run(app, "simulate", "--pedidos", "5", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert "no Pedidos server answers at http://127.0.0.1:9" in result.output


def test_simulate_refuses_to_verify_another_database(live_server: str, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    upgrade_schema(other)
    elsewhere = create_app(Settings(database_url=other, recovery_interval=0))
    try:
        result = run(elsewhere, "simulate", "--pedidos", "5", "--url", live_server)
    finally:
        runtime_of(elsewhere).close()
    assert result.exit_code == 2
    assert "uses another database than" in result.output and "--no-verify" in result.output


def test_simulate_says_which_database_it_checked(app: Flask, live_server: str) -> None:
    invoke(app, "seed", "--clientes", "20", "--produtos", "5")
    output = invoke(app, "simulate", "--pedidos", "10", "--concorrencia", "2", "--url", live_server)
    assert "database: " in output and "(the server's)" in output
    assert re.search(r"invariants\s+OK\n", output) and "checked_in" in output


@pytest.mark.usefixtures("isolated_logging")
def test_a_busy_port_is_explained(app: Flask) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run(app, "serve", "--port", str(taken.getsockname()[1]))
    # Werkzeug says it itself, in plain words, and exits 1.
    assert result.exit_code == 1
    assert "is in use by another program" in result.output and "Traceback" not in result.output
