"""The HTTP API: results, problem+json errors for every kind of bad input, and the reports."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder

from pedidos.app import create_app
from pedidos.config import Settings
from pedidos.orders.transaction import RANDOM_PEDIDO
from tests.helpers import PROBLEM, Store, held_until, order_body, post_pedido, runtime_of


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    problem: dict[str, Any] = response.get_json(force=True)
    assert problem["type"] == f"urn:pedidos:problem:{slug}"
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    return problem


def test_post_pedido_creates_the_order(client: FlaskClient, store: Store) -> None:
    cliente = store.cliente("100.00")
    produto = store.produto("19.90", 3)

    response = post_pedido(client, order_body(cliente, produto, 2))

    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/pedido/{body['id']}"
    assert body["total"] == "39.80"  # money is a decimal string, never a float
    assert body["itens"] == [
        {"produto_id": produto, "quantidade": 2, "preco_unitario": "19.90", "subtotal": "39.80"}
    ]
    assert body["criado_em"].endswith("Z")
    found = client.get(f"/pedido/{body['id']}").get_json()
    assert (found["estado"], found["pedido"], found["rejeicao"]) == ("CONCLUIDO", body, None)
    assert store.saldo(cliente) == Decimal("60.20")


def test_client_sent_prices_and_totals_are_refused(client: FlaskClient, store: Store) -> None:
    cliente = store.cliente("100.00")
    produto = store.produto("19.90", 3)
    body = order_body(cliente, produto)
    for forged in (
        {**body, "total": "0.01"},
        {**body, "itens": [{"produto_id": produto, "quantidade": 1, "preco_unitario": "0.01"}]},
    ):
        assert_problem(post_pedido(client, forged), 422, "entrada-invalida")
    assert store.saldo(cliente) == Decimal("100.00")


WAIT_FOR_IT = {"Prefer": "return=representation"}


def test_empty_body_simulates_an_arriving_order(client: FlaskClient, store: Store) -> None:
    assert_problem(client.post("/pedido", headers=WAIT_FOR_IT), 409, "sem-dados")
    cliente = store.cliente("100.00")
    produto = store.produto("1.00", 10)

    response = client.post("/pedido", headers=WAIT_FOR_IT)

    assert response.status_code == 201
    body = response.get_json()
    assert (body["cliente_id"], body["itens"][0]["produto_id"]) == (cliente, produto)


def test_rejections_are_problems_that_say_why(client: FlaskClient, store: Store) -> None:
    cliente = store.cliente("5.00")
    produto = store.produto("4.00", 1)

    estoque = assert_problem(
        post_pedido(client, order_body(cliente, produto, 2)),
        409,
        "estoque-insuficiente",
    )
    assert (estoque["produto_id"], estoque["disponivel"], estoque["pedido"]) == (produto, 1, 2)

    saldo_body = order_body(cliente, produto)
    store_produto = store.produto("6.00", 1)
    saldo_body["itens"] = [{"produto_id": store_produto, "quantidade": 1}]
    saldo = assert_problem(post_pedido(client, saldo_body), 409, "saldo-insuficiente")
    assert (saldo["saldo"], saldo["total"]) == ("5.00", "6.00")

    assert_problem(
        post_pedido(client, order_body(999_999, produto)),
        404,
        "cliente-nao-encontrado",
    )
    missing = assert_problem(
        post_pedido(client, order_body(cliente, 999_999)),
        404,
        "produto-nao-encontrado",
    )
    assert missing["produto_ids"] == [999_999]
    assert_problem(client.get("/pedido/999999"), 404, "pedido-nao-encontrado")
    assert_problem(client.get(f"/pedido/{2**80}"), 404, "pedido-nao-encontrado")


VALID_ITEM = {"produto_id": 1, "quantidade": 1}


@pytest.mark.parametrize(
    "body",
    [
        [],
        "pedido",
        42,
        None,
        {},
        {"cliente_id": 1},
        {"cliente_id": 1, "itens": []},
        {"cliente_id": 1, "itens": [VALID_ITEM] * 101},
        {"cliente_id": "1", "itens": [VALID_ITEM]},
        {"cliente_id": True, "itens": [VALID_ITEM]},
        {"cliente_id": 1.0, "itens": [VALID_ITEM]},
        {"cliente_id": 0, "itens": [VALID_ITEM]},
        {"cliente_id": -3, "itens": [VALID_ITEM]},
        {"cliente_id": 2**70, "itens": [VALID_ITEM]},
        {"cliente_id": 1, "itens": [{"produto_id": 1, "quantidade": 0}]},
        {"cliente_id": 1, "itens": [{"produto_id": 1, "quantidade": -1}]},
        {"cliente_id": 1, "itens": [{"produto_id": 1, "quantidade": 10_001}]},
        {"cliente_id": 1, "itens": [{"produto_id": 1, "quantidade": 1.5}]},
        {"cliente_id": 1, "itens": [{"produto_id": 1, "quantidade": False}]},
        {"cliente_id": 1, "itens": [{"produto_id": 1}]},
        {"cliente_id": 1, "itens": [{"produto_id": 1, "quantidade": 1, "extra": 1}]},
        {"cliente_id": 1, "itens": {"produto_id": 1, "quantidade": 1}},
        {"cliente_id": 1, "itens": [VALID_ITEM], "desconto": "10.00"},
    ],
)
def test_invalid_bodies_are_422(client: FlaskClient, body: Any) -> None:
    problem = assert_problem(post_pedido(client, body), 422, "entrada-invalida")
    assert problem["errors"] and all({"field", "message"} <= set(e) for e in problem["errors"])


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"cliente_id": 1,}',
        b'{"cliente_id": NaN, "itens": []}',
        b'{"cliente_id": Infinity, "itens": []}',
        b'{"cliente_id": -Infinity, "itens": []}',
        b"[" * 30_000 + b"]" * 30_000,
        b'{"cliente_id": 1, "itens": "\xff\xfe"}',
        b'{"cliente_id": ' + b"9" * 5000 + b"}",
    ],
    ids=[
        "truncated",
        "trailing-comma",
        "nan",
        "infinity",
        "minus-infinity",
        "deep",
        "bad-utf8",
        "huge-int-literal",
    ],
)
def test_malformed_json_is_400(client: FlaskClient, raw: bytes) -> None:
    response = client.post("/pedido", data=raw, content_type="application/json")
    assert_problem(response, 400, "json-malformado")


def test_wrong_content_type_is_415(client: FlaskClient) -> None:
    response = client.post("/pedido", data="cliente_id=1", content_type="text/plain")
    assert_problem(response, 415, "tipo-nao-suportado")


def test_oversized_body_is_413(client: FlaskClient) -> None:
    response = client.post("/pedido", data=b" " * 70_000, content_type="application/json")
    assert_problem(response, 413, "request-entity-too-large")


def test_unknown_route_and_method_are_problems(client: FlaskClient) -> None:
    assert_problem(client.get("/nada"), 404, "not-found")
    response = client.delete("/pedido/1")
    assert_problem(response, 405, "method-not-allowed")
    assert "GET" in response.headers["Allow"]


def test_full_queue_answers_503_with_retry_after(store: Store, database_url: str) -> None:
    cliente = store.cliente("100.00")
    produto = store.produto("1.00", 10)
    release = threading.Event()
    settings = Settings(database_url=database_url, workers=1, queue_size=1)
    app = create_app(settings, work=held_until(release))
    runtime = runtime_of(app)
    body = order_body(cliente, produto)
    try:
        first = runtime.processor.submit(RANDOM_PEDIDO)
        second = runtime.processor.submit(RANDOM_PEDIDO)
        response = post_pedido(app.test_client(), body)
        problem = assert_problem(response, 503, "sobrecarga")
        assert response.headers["Retry-After"] == "1"
        assert "overloaded" in problem["title"].lower()
        release.set()
        assert first.result(timeout=30).cliente_id == cliente
        assert second.result(timeout=30).cliente_id == cliente
        assert post_pedido(app.test_client(), body).status_code == 201
        assert runtime.processor.stats().overloaded == 1
    finally:
        release.set()
        runtime.close()


@pytest.fixture
def history(client: FlaskClient, store: Store) -> Iterator[dict[str, int]]:
    """Five orders by two clientes over two produtos."""
    ana = store.cliente("1000.00", "Ana Souza")
    bia = store.cliente("1000.00", "Bia Lima")
    cafe = store.produto("10.00", 100, "Café")
    pao = store.produto("2.50", 100, "Pão")
    for cliente, itens in (
        (ana, [(cafe, 1)]),
        (ana, [(pao, 2)]),
        (bia, [(cafe, 2), (pao, 1)]),
        (ana, [(cafe, 3)]),
        (bia, [(pao, 4)]),
    ):
        body = {
            "cliente_id": cliente,
            "itens": [{"produto_id": p, "quantidade": q} for p, q in itens],
        }
        assert post_pedido(client, body).status_code == 201
    yield {"ana": ana, "bia": bia, "cafe": cafe, "pao": pao}


def test_relatorio_pages_newest_first_with_a_cursor(
    client: FlaskClient, history: dict[str, int]
) -> None:
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        url = "/relatorio?limit=2&resumo=true" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url).get_json()
        assert (body["resumo"] is None) == (cursor is not None)  # summary on the first page only
        seen.extend(p["id"] for p in body["pedidos"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)


def test_the_kept_summary_equals_the_one_scanned_from_the_orders(
    client: FlaskClient, history: dict[str, int]
) -> None:
    kept = client.get("/relatorio?resumo=true").get_json()["resumo"]
    # A period that holds every order takes the scanning path over the same orders.
    scanned = client.get(
        "/relatorio?resumo=true&desde=2000-01-01T00:00:00Z&ate=2999-01-01T00:00:00Z"
    ).get_json()["resumo"]
    assert kept == scanned
    assert [p["nome"] for p in kept["por_produto"]] == ["Café", "Pão"]


def test_relatorio_summary_and_filters(client: FlaskClient, history: dict[str, int]) -> None:
    assert client.get("/relatorio").get_json()["resumo"] is None  # only when asked for
    resumo = client.get("/relatorio?resumo=true").get_json()["resumo"]
    assert (resumo["pedidos"], resumo["unidades"], resumo["receita"]) == (5, 13, "77.50")
    assert resumo["por_produto"][0] == {
        "produto_id": history["cafe"],
        "nome": "Café",
        "unidades": 6,
        "receita": "60.00",
    }
    assert {c["nome"]: (c["pedidos"], c["receita"]) for c in resumo["por_cliente"]} == {
        "Ana Souza": (3, "45.00"),
        "Bia Lima": (2, "32.50"),
    }

    by_cliente = client.get(f"/relatorio?resumo=true&cliente_id={history['bia']}").get_json()
    assert {p["cliente_id"] for p in by_cliente["pedidos"]} == {history["bia"]}
    assert by_cliente["resumo"]["receita"] == "32.50"

    by_produto = client.get(f"/relatorio?resumo=true&produto_id={history['pao']}").get_json()
    assert len(by_produto["pedidos"]) == 3
    assert by_produto["resumo"]["unidades"] == 7
    assert by_produto["resumo"]["receita"] == "17.50"

    future = client.get("/relatorio?resumo=true&desde=2999-01-01T00:00:00Z").get_json()
    assert future["pedidos"] == [] and future["resumo"]["pedidos"] == 0
    past = client.get("/relatorio?ate=2000-01-01T00:00:00%2B03:00").get_json()
    assert past["pedidos"] == []


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "limit=abc",
        "cliente_id=0",
        "desde=ontem",
        "desde=0.5",  # not a Unix time: ISO 8601 only
        "cursor=%21%21",
        "cursor=WyIyMDIwLTAxLTAxVDAwOjAwOjAwKzA1OjAwIiwgMV0",  # a zone: we never issue one
        "cursor=WyIyMDIwLTAxLTAxVDAwOjAwOjAwIiwgMTE4MDU5MTYyMDcxNzQxMTMwMzQyNF0",  # id > BIGINT
        "cursor=WzEsIDJd",  # [1, 2]
        "cursor=WyIyMDIwLTAxLTAxVDAwOjAwOjAwIiwgdHJ1ZV0",  # id true
        "desde=0001-01-01T00:01:33%2B01:01",  # before year 1 in UTC
        "x=1",
    ],
)
def test_relatorio_rejects_bad_queries(client: FlaskClient, query: str) -> None:
    response = client.get(f"/relatorio?{query}")
    assert response.status_code == 422, query
    assert response.mimetype == PROBLEM


def test_status_reports_pool_and_database(client: FlaskClient, history: dict[str, int]) -> None:
    post_pedido(client, order_body(history["ana"], 999))
    status = client.get("/status").get_json()
    processor = status["processor"]
    assert processor["completed"] == 5
    assert processor["rejected"] == {"produto_nao_encontrado": 1}
    assert processor["in_progress"] == processor["queued"] + processor["running"] == 0
    assert (processor["workers"], processor["queue_capacity"]) == (8, 64)
    assert status["accepting"] is True
    assert status["instance"] == {"name": socket.gethostname(), "pid": os.getpid()}
    assert status["database"] == {
        "por_estado": {"RECEBIDO": 0, "PROCESSANDO": 0, "CONCLUIDO": 5, "REJEITADO": 1, "ERRO": 0},
        "pedidos": 5,
        "unidades": 13,
        "receita": "77.50",
    }


def test_catalog_lists_paginate(client: FlaskClient, store: Store) -> None:
    ids = [store.produto("1.00", n) for n in range(5)]
    first = client.get("/produtos?limit=3").get_json()
    assert [p["id"] for p in first["produtos"]] == ids[:3]
    assert first["produtos"][0]["preco"] == "1.00"
    rest = client.get(f"/produtos?limit=3&after={first['next_after']}").get_json()
    assert [p["id"] for p in rest["produtos"]] == ids[3:] and rest["next_after"] is None
    cliente = store.cliente("12.34")
    assert client.get("/clientes").get_json()["clientes"] == [
        {"id": cliente, "nome": "Cliente Teste", "saldo": "12.34"}
    ]
    assert client.get("/clientes?limit=500").status_code == 422


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_readiness_fails_cleanly_without_a_database() -> None:
    app = create_app(Settings(database_url="mysql+pymysql://nobody@127.0.0.1:1/none"))
    try:
        assert_problem(app.test_client().get("/readyz"), 503, "banco-indisponivel")
        assert_problem(app.test_client().get("/relatorio"), 503, "banco-indisponivel")
    finally:
        runtime_of(app).close()


def test_openapi_documents_every_route(client: FlaskClient, app: Flask) -> None:
    document = client.get("/openapi.json").get_json()
    api_rules = {
        re.sub(r"<int:(\w+)>", r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith(("api.", "simulacoes_api."))
    }
    assert set(document["paths"]) == api_rules
    post_pedido = document["paths"]["/pedido"]["post"]
    assert "201" in post_pedido["responses"] and "409" in post_pedido["responses"]
    schemas = document["components"]["schemas"]
    assert schemas["PedidoIn"]["additionalProperties"] is False
    assert schemas["PedidoOut"]["properties"]["total"]["type"] == "string"
    docs = client.get("/docs")
    assert docs.status_code == 200 and b"swagger-ui" in docs.data
    with client.get("/docs/static/swagger-ui-bundle.js") as asset:
        assert asset.status_code == 200 and asset.mimetype == "text/javascript"


def test_a_bare_bodiless_post_is_accepted_at_once_and_then_processed(
    client: FlaskClient, store: Store
) -> None:
    cliente = store.cliente("100.00")
    produto = store.produto("1.00", 100)

    responses = [client.post("/pedido") for _ in range(20)]

    assert [r.status_code for r in responses] == [202] * 20
    locations = [r.headers["Location"] for r in responses]
    deadline = time.monotonic() + 30
    states: list[str] = []
    while time.monotonic() < deadline:
        states = [client.get(location).get_json()["estado"] for location in locations]
        if all(state == "CONCLUIDO" for state in states):
            break
        time.sleep(0.1)
    assert states == ["CONCLUIDO"] * 20
    assert store.estoque(produto) == 80 and store.saldo(cliente) == Decimal("80.00")
    assert len(client.get("/relatorio").get_json()["pedidos"]) == 20


def test_a_cursor_alone_keeps_the_page_size(client: FlaskClient, store: Store) -> None:
    cliente, produto = store.cliente("1000.00"), store.produto("1.00", 100)
    for _ in range(7):
        assert post_pedido(client, order_body(cliente, produto)).status_code == 201
    first = client.get("/relatorio?limit=3").get_json()
    second = client.get(f"/relatorio?cursor={first['next_cursor']}").get_json()
    assert len(second["pedidos"]) == 3
    wider = client.get(f"/relatorio?cursor={first['next_cursor']}&limit=50").get_json()
    assert len(wider["pedidos"]) == 4 and wider["next_cursor"] is None


def test_report_rows_carry_names(client: FlaskClient, store: Store) -> None:
    cliente = store.cliente("100.00", nome="Joana Lima")
    produto = store.produto("3.00", 10, nome="Rapadura mineira")
    post_pedido(client, order_body(cliente, produto, 2))
    (pedido,) = client.get("/relatorio").get_json()["pedidos"]
    assert pedido["cliente_nome"] == "Joana Lima"
    assert pedido["itens"][0]["produto_nome"] == "Rapadura mineira"
    document = client.get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    assert "cliente_nome" in schemas["PedidoNomeado"]["required"]
    assert "produto_nome" in schemas["ItemNomeado"]["required"]


def test_status_names_its_database(client: FlaskClient) -> None:
    status = client.get("/status").get_json()
    assert re.fullmatch(r"[0-9a-f]{16}", status["database_id"])
    assert client.get("/status").get_json()["database_id"] == status["database_id"]


def test_problem_titles_are_english_throughout(client: FlaskClient, store: Store) -> None:
    produto = store.produto("1.00", 1)
    missing = post_pedido(client, order_body(999_999, produto))
    assert missing.get_json()["title"] == "Cliente not found"
    cliente = store.cliente("0.50")
    poor = post_pedido(client, order_body(cliente, produto))
    assert poor.get_json()["title"] == "Insufficient saldo"
    assert client.get("/nada-aqui").get_json()["title"] == "Not found"
    assert client.delete("/pedido").get_json()["title"] == "Method not allowed"


def test_a_body_in_memory_reaches_the_server_whole_and_a_stream_as_it_comes(
    app: Flask, store: Store
) -> None:
    """A server may send a list at once; an iterator it must pull chunk by chunk (granian lets
    go of the interpreter lock for each), so every buffered body leaves as a one-item list."""
    cliente, produto = store.cliente("100.00"), store.produto("2.50", 10)
    started: list[str] = []

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append(status)
        return lambda data: None

    def call(environ: dict[str, Any]) -> Any:
        return app(environ, start)

    order = EnvironBuilder("/pedido", method="POST", json=order_body(cliente, produto, 2))
    answer = call(order.get_environ())
    assert isinstance(answer, list) and len(answer) == 1
    assert started[-1] == "201 CREATED"
    assert json.loads(answer[0])["total"] == "5.00"

    problem = call(EnvironBuilder("/pedido", method="POST", data=b"{").get_environ())
    assert isinstance(problem, list) and started[-1].startswith("4")

    export = call(EnvironBuilder(f"/relatorio.csv?cliente_id={cliente}").get_environ())
    try:
        assert not isinstance(export, list)  # a generator: the rows are read as it is sent
        assert b"".join(export).decode().count("\n") == 2  # the header and the one item
    finally:
        export.close()
