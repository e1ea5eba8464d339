"""Reports read from PEDIDOS_READ_DATABASE_URL when it is set; orders and lookups never do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from pedidos.app import create_app
from pedidos.config import Settings
from pedidos.storage.engine import make_engine, upgrade_schema
from tests.helpers import order_body, post_pedido, runtime_of, seed_catalog


def _database(path: Path) -> str:
    """A migrated SQLite database holding one cliente (saldo 100.00) and one produto."""
    url = f"sqlite:///{path}"
    upgrade_schema(url)
    engine = make_engine(url)
    seed_catalog(engine, 1, "100.00", [10], preco="2.50")
    engine.dispose()
    return url


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    # Two separate databases stand for a primary and a replica that has not caught up.
    settings = Settings(
        database_url=_database(tmp_path / "primary.sqlite3"),
        read_database_url=_database(tmp_path / "replica.sqlite3"),
        workers=2,
        queue_size=8,
        recovery_interval=0,
    )
    app = create_app(settings)
    yield app
    runtime_of(app).close()


def test_reports_read_the_read_database_and_orders_the_primary(app: Flask) -> None:
    client = app.test_client()
    placed = post_pedido(client, order_body(1, 1, 2))
    assert placed.status_code == 201, placed.get_data(as_text=True)
    pedido_id = placed.get_json()["id"]

    # The order and its lookup are on the primary.
    assert client.get(f"/pedido/{pedido_id}").get_json()["estado"] == "CONCLUIDO"
    assert client.get("/status").get_json()["database"]["pedidos"] == 1
    # The report, its summary, its CSV and the catalogue pages come from the replica, which
    # has not seen the order yet.
    assert client.get("/clientes").get_json()["clientes"][0]["saldo"] == "100.00"
    relatorio = client.get("/relatorio?resumo=true").get_json()
    assert relatorio["pedidos"] == [] and relatorio["resumo"]["pedidos"] == 0
    csv_lines = client.get("/relatorio.csv").get_data(as_text=True).strip().splitlines()
    assert len(csv_lines) == 1 and csv_lines[0].startswith("pedido_id,")
    assert "Nenhum pedido" in client.get("/painel/relatorio").get_data(as_text=True)
