"""Solicitacoes: async acceptance, idempotency keys, recovery, exactly-once settlement."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, update
from sqlalchemy.orm import Session, sessionmaker

from pedidos.app import create_app
from pedidos.config import Settings
from pedidos.orders.batches import SolicitacaoRef
from pedidos.orders.recovery import Recovery
from pedidos.orders.transaction import (
    RANDOM_PEDIDO,
    PedidoRequest,
    PedidoResult,
    Settled,
    place_pedidos,
)
from pedidos.storage.models import Estado, Pedido, Solicitacao
from tests.helpers import (
    MakeProcessor,
    Store,
    estado_of,
    held_until,
    lost_connection,
    order_body,
    order_request,
    outcomes_of,
    post_pedido,
    record_request,
    release_together,
    runtime_of,
)

ASYNC = {"Prefer": "respond-async"}


def wait_settled(client: FlaskClient, location: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state: dict[str, Any] = client.get(location).get_json()
        if state["estado"] not in ("RECEBIDO", "PROCESSANDO"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"{location} did not settle in {timeout} s")


def test_respond_async_answers_202_then_settles(client: FlaskClient, store: Store) -> None:
    cliente = store.cliente("10.00")
    produto = store.produto("4.00", 1)

    # Two requests for the last unit: both accepted, they race on the pool, one wins.
    responses = [post_pedido(client, order_body(cliente, produto), **ASYNC) for _ in range(2)]

    for response in responses:
        assert response.status_code == 202
        assert response.headers["Preference-Applied"] == "respond-async"
        assert response.headers["Location"] == f"/pedido/{response.get_json()['id']}"
        assert response.get_json()["estado"] in ("RECEBIDO", "CONCLUIDO", "REJEITADO")
    settled = {
        state["estado"]: state
        for state in (wait_settled(client, r.headers["Location"]) for r in responses)
    }
    assert set(settled) == {"CONCLUIDO", "REJEITADO"}
    done, rejected = settled["CONCLUIDO"], settled["REJEITADO"]
    assert done["pedido"]["total"] == "4.00" and done["rejeicao"] is None
    assert rejected["pedido"] is None
    assert rejected["rejeicao"]["reason"] == "estoque_insuficiente"
    assert rejected["rejeicao"]["disponivel"] == 0
    # Rejected requests live only in solicitacoes.
    assert store.count(Pedido) == 1
    assert store.ledger().estados_divergentes == 0


def test_prefer_wait_returns_the_outcome_when_it_is_ready(
    client: FlaskClient, store: Store
) -> None:
    cliente = store.cliente("10.00")
    produto = store.produto("4.00", 1)
    prefer = {"Prefer": "respond-async, wait=10"}

    created = post_pedido(client, order_body(cliente, produto), **prefer)
    rejected = post_pedido(client, order_body(cliente, produto), **prefer)

    assert created.status_code == 201
    assert created.headers["Location"] == f"/pedido/{created.get_json()['id']}"
    assert rejected.status_code == 409
    assert rejected.get_json()["reason"] == "estoque_insuficiente"


def test_same_key_and_body_replays_instead_of_ordering_twice(
    client: FlaskClient, store: Store
) -> None:
    cliente = store.cliente("10.00")
    produto = store.produto("4.00", 5)
    body = order_body(cliente, produto)

    first = post_pedido(client, body, **{"Idempotency-Key": "compra-1"})
    again = post_pedido(client, body, **{"Idempotency-Key": "compra-1"})

    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert store.saldo(cliente) == Decimal("6.00")
    assert store.count(Pedido) == 1

    too_much = order_body(cliente, produto, 3)
    refused = post_pedido(client, too_much, **{"Idempotency-Key": "compra-2"})
    replayed = post_pedido(client, too_much, **{"Idempotency-Key": "compra-2"})
    assert refused.status_code == replayed.status_code == 409
    assert refused.get_json() == replayed.get_json()
    assert refused.get_json()["reason"] == "saldo_insuficiente"


def test_same_key_with_another_body_is_422(client: FlaskClient, store: Store) -> None:
    cliente = store.cliente("10.00")
    produto = store.produto("1.00", 5)
    first = post_pedido(client, order_body(cliente, produto), **{"Idempotency-Key": "k"})
    assert first.status_code == 201

    response = post_pedido(client, order_body(cliente, produto, 2), **{"Idempotency-Key": "k"})

    assert response.status_code == 422
    assert response.get_json()["type"] == "urn:pedidos:problem:chave-reutilizada"
    assert store.count(Pedido) == 1


@pytest.mark.parametrize("key", ["", "com espaço", "x" * 256, "ação"])
def test_malformed_keys_are_400(client: FlaskClient, key: str) -> None:
    response = client.post("/pedido", headers=[("Idempotency-Key", key.encode().decode("latin-1"))])
    assert response.status_code == 400
    assert response.get_json()["type"] == "urn:pedidos:problem:chave-invalida"


def test_expired_keys_can_name_a_new_request(
    client: FlaskClient, store: Store, sessions: sessionmaker[Session]
) -> None:
    cliente = store.cliente("10.00")
    produto = store.produto("1.00", 5)
    first = post_pedido(client, order_body(cliente, produto), **{"Idempotency-Key": "velha"})
    with sessions.begin() as session:
        session.execute(update(Solicitacao).values(criado_em=datetime(2020, 1, 1)))

    second = post_pedido(client, order_body(cliente, produto), **{"Idempotency-Key": "velha"})

    assert first.status_code == second.status_code == 201
    assert first.get_json()["id"] != second.get_json()["id"]
    assert store.count(Pedido) == 2


@pytest.fixture
def blocked_app(database_url: str, engine: Engine) -> Iterator[tuple[Flask, threading.Event]]:
    """An app, on the emptied database, whose orders wait for the test's signal to run."""
    release = threading.Event()
    settings = Settings(database_url=database_url, recovery_interval=0)
    app = create_app(settings, work=held_until(release))
    yield app, release
    release.set()
    runtime_of(app).close()


def test_same_key_while_the_first_is_in_flight_is_409(
    blocked_app: tuple[Flask, threading.Event], store: Store
) -> None:
    app, release = blocked_app
    client = app.test_client()
    body = order_body(store.cliente("10.00"), store.produto("1.00", 5))
    headers = {"Idempotency-Key": "lenta", "Prefer": "respond-async"}

    accepted = post_pedido(client, body, **headers)
    in_flight = post_pedido(client, body, **headers)
    release.set()

    assert accepted.status_code == 202
    assert in_flight.status_code == 409
    assert in_flight.get_json()["type"] == "urn:pedidos:problem:em-andamento"
    assert wait_settled(client, accepted.headers["Location"])["estado"] == "CONCLUIDO"
    assert post_pedido(client, body, **headers).status_code == 201


# On SQLite the held orders would hold the one write lock that recording needs.
@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_a_recorded_request_the_full_queue_refuses_is_no_overload(
    database_url: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue filled up between the capacity check and the hand-off: the request is
    recorded already, answered 202, and left to recovery; no client saw an overload."""
    release = threading.Event()
    settings = Settings(database_url=database_url, workers=1, queue_size=1, recovery_interval=0)
    app = create_app(settings, work=held_until(release))
    runtime = runtime_of(app)
    body = order_body(store.cliente("10.00"), store.produto("1.00", 5))
    try:
        held = [
            runtime.processor.submit(RANDOM_PEDIDO) for _ in range(2)
        ]  # one running, one queued
        # The race, made certain: the capacity check passes, then the queue is full.
        monkeypatch.setattr(runtime.processor, "ensure_capacity", lambda: None)
        accepted = post_pedido(app.test_client(), body, Prefer="respond-async")
        assert accepted.status_code == 202
        assert runtime.processor.stats().overloaded == 0
        release.set()
        for future in held:
            future.result(timeout=30)
    finally:
        release.set()
        runtime.close()


def test_the_same_key_sent_20_times_at_once_orders_once(live_server: str, store: Store) -> None:
    cliente = store.cliente("100.00")
    produto = store.produto("3.00", 50)
    body = order_body(cliente, produto)

    with httpx.Client(base_url=live_server, timeout=60) as http:
        responses = release_together(
            20, lambda _i: http.post("/pedido", json=body, headers={"Idempotency-Key": "uma-so"})
        )

    statuses = Counter(r.status_code for r in responses if isinstance(r, httpx.Response))
    assert sum(statuses.values()) == 20 and set(statuses) <= {201, 409}, statuses
    ids = {
        r.json()["id"] for r in responses if isinstance(r, httpx.Response) and r.status_code == 201
    }
    assert len(ids) == 1
    assert store.count(Pedido) == 1 and store.saldo(cliente) == Decimal("97.00")


def test_recovery_runs_requests_left_behind(
    sessions: sessionmaker[Session], store: Store, make_processor: MakeProcessor
) -> None:
    cliente = store.cliente("10.00")
    produto = store.produto("1.00", 5)
    # As if the process died after recording them: nobody submitted these.
    overdue = [record_request(sessions, order_request(cliente, produto)) for _ in range(3)]
    not_yet = record_request(sessions, order_request(cliente, produto), grace=600)
    processor = make_processor()
    recovery = Recovery(
        sessions, processor, interval=1, lease=timedelta(seconds=30), max_attempts=3
    )

    assert recovery.run_once() == 3
    processor.shutdown()

    assert [estado_of(sessions, i) for i in overdue] == ["CONCLUIDO"] * 3
    assert estado_of(sessions, not_yet) == "RECEBIDO"
    assert store.estoque(produto) == 2


def test_recovery_gives_up_after_max_attempts(
    sessions: sessionmaker[Session], store: Store, make_processor: MakeProcessor
) -> None:
    cliente = store.cliente("10.00")
    produto = store.produto("1.00", 5)
    stuck = record_request(sessions, order_request(cliente, produto))
    with sessions.begin() as session:
        session.execute(update(Solicitacao).values(tentativas=3, estado=Estado.PROCESSANDO))
    recovery = Recovery(
        sessions, make_processor(), interval=1, lease=timedelta(seconds=30), max_attempts=3
    )

    assert recovery.run_once() == 0

    assert estado_of(sessions, stuck) == "ERRO"
    assert store.ledger().contadores == (0, 0, Decimal("0.00"))
    assert store.estoque(produto) == 5


def test_a_request_run_many_times_at_once_settles_once(
    sessions: sessionmaker[Session], store: Store, make_processor: MakeProcessor
) -> None:
    cliente = store.cliente("10.00")
    produto = store.produto("1.00", 5)
    solicitacao = record_request(sessions, order_request(cliente, produto, 2))
    processor = make_processor(workers=10)

    futures = release_together(10, lambda _i: processor.submit(SolicitacaoRef(solicitacao)))
    outcomes = outcomes_of([f for f in futures if not isinstance(f, BaseException)])

    assert len(outcomes) == 10
    assert {o.id for o in outcomes if isinstance(o, PedidoResult)} == {solicitacao}
    assert store.count(Pedido) == 1 and store.estoque(produto) == 3
    assert processor.stats().completed == 10  # each caller saw the one committed order


@pytest.mark.parametrize("landed", [True, False], ids=["commit-landed", "commit-lost"])
def test_a_connection_lost_during_commit_never_doubles_an_order(
    store: Store, make_processor: MakeProcessor, landed: bool
) -> None:
    cliente = store.cliente("10.00")
    produto = store.produto("1.00", 5)
    failures = [1]

    def commit_then_lose_the_connection(
        session: Session, requests: Sequence[PedidoRequest]
    ) -> list[Settled]:
        hook = "after_commit" if landed else "before_commit"

        def fail_once(_session: Session) -> None:
            if failures:
                failures.pop()
                raise lost_connection()

        event.listen(session, hook, fail_once, once=True)
        return place_pedidos(session, requests)

    processor = make_processor(work=commit_then_lose_the_connection)
    result = processor.submit(order_request(cliente, produto)).result(timeout=30)

    assert store.count(Pedido) == 1 and store.estoque(produto) == 4
    with store.sessions.begin() as session:
        assert session.get(Pedido, result.id) is not None
    assert processor.stats().retries == ({} if landed else {"connection_lost": 1})


def test_draining_refuses_new_orders_and_readiness(app: Flask, store: Store) -> None:
    client = app.test_client()
    body = order_body(store.cliente("10.00"), store.produto("1.00", 5))
    runtime = runtime_of(app)

    runtime.drain(timeout=5)

    for response in (post_pedido(client, body), client.get("/readyz")):
        assert response.status_code == 503
        assert response.get_json()["type"] == "urn:pedidos:problem:desligando"
    assert client.get("/status").get_json()["accepting"] is False
