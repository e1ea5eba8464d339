"""The dashboard's server side: page, fragments, CSV export, simulations and their guard."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import OperationalError

from pedidos.app import create_app
from pedidos.config import Settings
from pedidos.orders.processor import PedidoProcessor
from pedidos.sim.simulacoes import SimulationPlan, Simulations
from pedidos.storage.engine import make_engine, make_sessions
from pedidos.web.formatting import brl, data_hora, inteiro
from tests.helpers import Store, order_body, runtime_of


def test_brazilian_formatting() -> None:
    assert brl(Decimal("1234.5")) == "R$\u00a01.234,50"
    assert brl(Decimal("0.07")) == "R$\u00a00,07"
    assert brl(Decimal("-1234567.891")) == "-R$\u00a01.234.567,89"
    assert inteiro(1234567) == "1.234.567"
    assert data_hora(datetime(2026, 11, 29, 15, 4, 5)) == "29/11/2026 15:04:05 UTC"
    assert data_hora(datetime(2026, 11, 29, 15, 4, 5, tzinfo=UTC)) == "29/11/2026 15:04:05 UTC"


def order(client: FlaskClient, cliente_id: int, produto_id: int, quantidade: int = 1) -> Any:
    return client.post("/pedido", json=order_body(cliente_id, produto_id, quantidade))


def test_page_shows_catalog_and_orders_in_portuguese(app: Flask, store: Store) -> None:
    cliente = store.cliente("1500.00", nome="Maria da Silva")
    produto = store.produto("1234.56", 3, nome="Cadeira Gamer")
    assert order(app.test_client(), cliente, produto).status_code == 201

    page = app.test_client().get("/")

    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '<html lang="pt-BR">' in html
    assert "Maria da Silva" in html and "Cadeira Gamer" in html
    assert "R$\u00a0265,44" in html  # saldo after the order
    assert "R$\u00a01.234,56" in html  # preco, and the order's total
    # The report row names the cliente and the produto, not only their ids.
    row = html.split("Pedidos concluídos, mais recentes primeiro")[1].split("</table>")[0]
    assert "Maria da Silva" in row and "1 \u00d7 Cadeira Gamer" in row


def test_assets_are_served_locally(app: Flask) -> None:
    client = app.test_client()
    html = client.get("/").get_data(as_text=True)
    assert "http://" not in html.split("<body>")[0] and "https://" not in html
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        response = client.get(asset)
        assert response.status_code == 200 and len(response.data) > 500
        response.close()


def test_report_fragment_filters_and_pages(app: Flask, store: Store) -> None:
    ana, bia = store.cliente("1000.00", nome="Ana"), store.cliente("1000.00", nome="Bia")
    produto = store.produto("10.00", 100)
    client = app.test_client()
    for _ in range(25):
        order(client, ana, produto)
    order(client, bia, produto, 2)

    first = client.get(f"/painel/relatorio?cliente_id={ana}").get_data(as_text=True)
    assert first.count("<tr>") == 1 + 20  # header + a page of 20
    assert "Bia" not in first and "Ana" in first
    cursor = first.split('data-cursor="')[1].split('"')[0]
    second = client.get(f"/painel/relatorio?cliente_id={ana}&cursor={cursor}")
    assert second.get_data(as_text=True).count("<tr>") == 1 + 5
    only_bia = client.get(f"/painel/relatorio?cliente_id={bia}").get_data(as_text=True)
    assert "2 \u00d7 Produto Teste" in only_bia and "R$\u00a020,00" in only_bia

    summary = client.get(f"/painel/resumo?produto_id={produto}").get_data(as_text=True)
    assert "<strong>26</strong> pedidos" in summary and "R$\u00a0270,00" in summary


def test_fragments_refuse_bad_filters_with_problems(app: Flask) -> None:
    client = app.test_client()
    for url in (
        "/painel/relatorio?cliente_id=abc",
        "/painel/relatorio?desde=ontem",
        "/painel/relatorio?cursor=nope",
        "/painel/clientes?after=-1",
        "/relatorio.csv?produto_id=0",
    ):
        response = client.get(url)
        assert response.status_code == 422, url
        assert response.mimetype == "application/problem+json"


def test_csv_export_has_every_item_of_every_matching_order(app: Flask, store: Store) -> None:
    cliente = store.cliente("100000.00")
    caneta, caderno = store.produto("2.50", 10_000), store.produto("19.90", 10_000)
    client = app.test_client()
    body = {
        "cliente_id": cliente,
        "itens": [
            {"produto_id": caneta, "quantidade": 3},
            {"produto_id": caderno, "quantidade": 1},
        ],
    }
    for _ in range(230):  # more than one CSV page (200 orders)
        assert client.post("/pedido", json=body).status_code == 201

    response = client.get(f"/relatorio.csv?cliente_id={cliente}")

    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 460 and len({r["pedido_id"] for r in rows}) == 230
    assert sum(Decimal(r["subtotal"]) for r in rows) == Decimal("230") * Decimal("27.40")
    assert {(r["produto_id"], r["quantidade"], r["preco_unitario"]) for r in rows} == {
        (str(caneta), "3", "2.50"),
        (str(caderno), "1", "19.90"),
    }
    assert {r["cliente_nome"] for r in rows} == {"Cliente Teste"}
    assert {r["produto_nome"] for r in rows} == {"Produto Teste"}
    # Times as the JSON API writes them: UTC with a Z.
    assert all(r["criado_em"].endswith("Z") for r in rows)
    api_times = {p["criado_em"] for p in client.get("/relatorio?limit=5").get_json()["pedidos"]}
    assert api_times <= {r["criado_em"] for r in rows}


def wait_for_simulation(client: FlaskClient, location: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        simulation: dict[str, Any] = client.get(location).get_json()
        if not simulation["running"]:
            return simulation
        time.sleep(0.05)
    raise AssertionError("the simulation did not finish in 60 s")


def test_simulation_runs_and_checks_invariants(app: Flask, store: Store) -> None:
    for i in range(20):
        store.cliente("60.00", nome=f"Cliente {i}")
    hot = store.produto("7.00", 500)
    for _ in range(5):
        store.produto("5.00", 3)
    client = app.test_client()

    started = client.post(
        "/simulacoes", json={"pedidos": 300, "concorrencia": 12, "quente_pct": 50}
    )
    assert started.status_code == 202
    done = wait_for_simulation(client, started.headers["Location"])

    assert done["done"] == 300 and sum(done["outcomes"].values()) == 300
    assert done["invariants_ok"] is True and done["violations"] == []
    assert done["outcomes"]["concluido"] == store.ledger().pedidos
    # Money runs out (20 clientes x R$ 60), so some are rejected, each with its reason.
    assert done["outcomes"]["rejeitado"] == sum(done["reasons"].values()) > 0
    assert 500 - store.estoque(hot) > 0  # the hot produto was bought
    assert done["latency_ms"]["p50"] <= done["latency_ms"]["p99"] <= done["latency_ms"]["max"]
    # Once it has finished, the next simulation may start.
    again = client.post("/simulacoes", json={"pedidos": 1})
    assert again.status_code == 202
    assert wait_for_simulation(client, again.headers["Location"])["done"] == 1


def test_only_one_simulation_at_a_time(app: Flask, store: Store) -> None:
    store.cliente("100000.00")
    store.produto("1.00", 100_000)
    client = app.test_client()
    first = client.post("/simulacoes", json={"pedidos": 3000, "concorrencia": 4})
    second = client.post("/simulacoes", json={"pedidos": 10})
    assert first.status_code == 202
    assert second.status_code == 409
    assert second.get_json()["type"] == "urn:pedidos:problem:simulacao-em-andamento"
    wait_for_simulation(client, first.headers["Location"])
    assert client.get("/simulacoes/999").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"pedidos": 0},
        {"pedidos": 100_001},
        {"concorrencia": 257},
        {"quente_pct": 101},
        {"pedidos": "10"},
        {"pedidos": 1.0},
        {"outro": 1},
    ],
)
def test_simulation_input_is_validated(app: Flask, body: dict[str, Any]) -> None:
    response = app.test_client().post("/simulacoes", json=body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"


@pytest.fixture
def guarded_app(database_url: str, engine: object) -> Any:
    app = create_app(Settings(database_url=database_url, admin_token="s3cr3t-token"))
    yield app
    runtime_of(app).close()


def test_simulations_need_the_admin_token_when_one_is_set(guarded_app: Flask) -> None:
    client = guarded_app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cr3t-token"}):
        response = client.post("/simulacoes", json={"pedidos": 1}, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "s3cr3t" not in response.get_data(as_text=True)
    allowed = client.post(
        "/simulacoes", json={"pedidos": 1}, headers={"Authorization": "Bearer s3cr3t-token"}
    )
    assert allowed.status_code == 202
    wait_for_simulation(client, allowed.headers["Location"])
    # The page asks for the token only when one is configured.
    assert 'name="token"' in client.get("/").get_data(as_text=True)


def test_simulations_are_refused_in_production_without_a_token(
    database_url: str, engine: object
) -> None:
    settings = replace(Settings(database_url=database_url), environment="production")
    app = create_app(settings)
    try:
        response = app.test_client().post("/simulacoes", json={"pedidos": 1})
        assert response.status_code == 401
        assert response.get_json()["type"] == "urn:pedidos:problem:nao-autorizado"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    finally:
        runtime_of(app).close()


def test_closing_the_app_stops_a_running_simulation(app: Flask, store: Store) -> None:
    store.cliente("100000.00")
    store.produto("1.00", 100_000)
    started = app.test_client().post("/simulacoes", json={"pedidos": 100_000, "concorrencia": 4})
    simulation = runtime_of(app).simulations._running[started.get_json()["id"]]
    deadline = time.monotonic() + 30
    while simulation.done < 10:
        assert time.monotonic() < deadline, "the simulation placed no 10 orders in 30 s"
        time.sleep(0.01)

    runtime_of(app).close()

    assert not simulation.running and simulation.done < 100_000
    assert simulation.error is None and simulation.violations == []


def test_a_simulation_that_cannot_reach_the_database_is_refused() -> None:
    unreachable = make_sessions(make_engine("mysql+pymysql://nobody@127.0.0.1:1/none"))
    processor = PedidoProcessor(unreachable, workers=1, queue_size=1, max_retries=0)
    simulations = Simulations(unreachable, unreachable, processor, render=lambda _s: "{}")
    try:
        # Its state lives in the database: without one it never starts (the API says 503).
        with pytest.raises(OperationalError):
            simulations.start(SimulationPlan(pedidos=5, concorrencia=1, quente_pct=0))
        assert simulations._running == {}
    finally:
        processor.shutdown()


def test_throughput_comes_from_the_database_per_second(app: Flask, store: Store) -> None:
    cliente = store.cliente("1000.00")
    produto = store.produto("1.00", 1_000)
    client = app.test_client()
    for _ in range(12):
        assert order(client, cliente, produto).status_code == 201
    time.sleep(1.1)  # the current second is left out until it is whole

    body = client.get("/painel/vazao?segundos=120").get_json()

    assert len(body["valores"]) == 120 and sum(body["valores"]) == 12
    assert abs(body["fim"] - time.time()) < 5
    recent = client.get("/painel/vazao?segundos=5").get_json()
    assert 0 < sum(recent["valores"]) <= 12 and len(recent["valores"]) == 5
    assert client.get("/painel/vazao?segundos=0").status_code == 422


def test_simulations_are_listed_newest_first(app: Flask, store: Store) -> None:
    store.cliente("100.00")
    store.produto("1.00", 100)
    client = app.test_client()
    assert client.get("/simulacoes").get_json() == {"simulacoes": []}
    location = client.post("/simulacoes", json={"pedidos": 10, "concorrencia": 2}).headers[
        "Location"
    ]
    wait_for_simulation(client, location)
    (listed,) = client.get("/simulacoes").get_json()["simulacoes"]
    assert f"/simulacoes/{listed['id']}" == location and listed["done"] == 10
