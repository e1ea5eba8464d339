"""Reports keep to their own connections and time limit; simulations are shared by every
instance on the database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine, text, update

from pedidos.app import create_app
from pedidos.config import Settings
from pedidos.storage.models import Simulacao, utc_now
from pedidos.storage.reads import ReadTooSlow
from pedidos.web.problems import PROBLEM_OF
from tests.helpers import Store, order_body, runtime_of

# A query that takes seconds on either database, whatever the data.
SLOW_QUERY = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) "
    "SELECT COUNT(*) FROM n"
)


@pytest.fixture
def tight(engine: Engine, database_url: str) -> Iterator[Flask]:
    """One report connection, one CSV export, a 0.3 s statement limit."""
    app = create_app(
        Settings(
            database_url=database_url,
            workers=2,
            read_pool_size=1,
            read_timeout=0.3,
            csv_exports=1,
        )
    )
    yield app
    runtime_of(app).close()


def test_a_slow_report_query_is_stopped_by_the_database(tight: Flask) -> None:
    started = time.monotonic()
    with pytest.raises(ReadTooSlow) as caught, runtime_of(tight).reads.session() as session:
        if session.get_bind().dialect.name == "mysql":
            # MariaDB stops recursion at 1000 rows by default, long before it gets slow.
            session.execute(text("SET SESSION max_recursive_iterations = 1000000000"))
        session.execute(text(SLOW_QUERY)).scalar()
    assert time.monotonic() - started < 3
    problem = PROBLEM_OF[ReadTooSlow](caught.value)
    assert (problem.status, problem.slug) == (503, "leitura-demorada")
    assert problem.headers["Retry-After"]
    # The connection is usable again afterwards.
    with runtime_of(tight).reads.session() as session:
        assert session.execute(text("SELECT 1")).scalar() == 1


def test_busy_report_connections_refuse_reports_but_not_orders(tight: Flask, store: Store) -> None:
    cliente = store.cliente("100.00")
    produto = store.produto("1.00", 10)
    client = tight.test_client()
    reads = runtime_of(tight).reads
    # Every report connection checked out: the one for reports and the one for the export.
    with reads.session() as held, reads.session() as also_held:
        held.execute(text("SELECT 1"))
        also_held.execute(text("SELECT 1"))
        busy = client.get("/relatorio?resumo=true")
        assert busy.status_code == 503
        assert busy.get_json()["type"] == "urn:pedidos:problem:leituras-ocupadas"
        assert busy.headers["Retry-After"] == "2"
        assert client.get("/painel/resumo").status_code == 503
        placed = client.post(
            "/pedido",
            json=order_body(cliente, produto),
        )
        assert placed.status_code == 201
        assert client.get("/readyz").status_code == 200
    assert client.get("/relatorio?resumo=true").status_code == 200


def test_csv_exports_are_capped(tight: Flask) -> None:
    reads = runtime_of(tight).reads
    client = tight.test_client()
    assert reads.export_slot()
    try:
        refused = client.get("/relatorio.csv")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "5"
        assert refused.get_json()["type"] == "urn:pedidos:problem:exportacoes-demais"
    finally:
        reads.release_export()
    for _ in range(3):  # each finished export gives its slot back
        response = client.get("/relatorio.csv")
        assert response.status_code == 200
        assert response.get_data(as_text=True).startswith("pedido_id,")
        response.close()


def test_one_simulation_at_a_time_across_instances(database_url: str, store: Store) -> None:
    store.cliente("1000000.00")
    store.produto("1.00", 1_000_000)
    first, second = (create_app(Settings(database_url=database_url, workers=2)) for _ in range(2))
    try:
        started = first.test_client().post(
            "/simulacoes", json={"pedidos": 100_000, "concorrencia": 1}
        )
        assert started.status_code == 202
        location = started.headers["Location"]
        refused = second.test_client().post("/simulacoes", json={"pedidos": 1})
        assert refused.status_code == 409
        deadline = time.monotonic() + 10
        seen = second.test_client().get(location).get_json()
        while seen["done"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = second.test_client().get(location).get_json()
        assert seen["running"] and seen["done"] > 0  # the other instance's progress
        runtime_of(first).close()
        ended = second.test_client().get(location).get_json()
        assert not ended["running"] and ended["invariants_ok"] is True
        assert second.test_client().get("/simulacoes/999999").status_code == 404
        again = second.test_client().post("/simulacoes", json={"pedidos": 2})
        assert again.status_code == 202
        runtime_of(second).simulations.stop()
    finally:
        runtime_of(first).close()
        runtime_of(second).close()


def test_a_dead_instances_simulation_frees_the_slot(app: Flask, store: Store) -> None:
    runtime = runtime_of(app)
    with runtime.sessions.begin() as session:
        session.add(
            Simulacao(
                ativa=1, estado='{"running": true}', atualizado_em=utc_now() - timedelta(minutes=5)
            )
        )
    client = app.test_client()
    store.cliente("10.00")
    store.produto("1.00", 10)
    started = client.post("/simulacoes", json={"pedidos": 1})
    assert started.status_code == 202
    runtime.simulations.stop()
    with runtime.sessions.begin() as session:
        session.execute(update(Simulacao).values(ativa=None))
