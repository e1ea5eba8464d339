"""Batches: one transaction for many orders, exactly the outcomes of one by one, and a COMMIT
whose connection drops never doubles or loses an order nor answers a caller for another."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, make_url, select
from sqlalchemy.orm import Session, sessionmaker

from pedidos.orders import batches as running
from pedidos.orders.batches import CommitOutcomeUnknown, Job, run_batch
from pedidos.orders.invariants import missing_pedidos, violations
from pedidos.orders.processor import PedidoProcessor
from pedidos.orders.transaction import (
    ItemRequest,
    PedidoRejeitado,
    PedidoRequest,
    PedidoResult,
    SaldoInsuficiente,
    Settled,
    place_pedido,
    place_pedidos,
)
from pedidos.sim.seed import reset
from pedidos.storage.engine import make_engine, make_sessions
from pedidos.storage.models import Cliente, Pedido, Produto
from tests.helpers import Store, lost_connection, mysql_error, order_request, release_together
from tests.mysql_proxy import OnCommit, commit_proxy


def scarce_catalog(store: Store) -> tuple[list[int], list[int]]:
    clientes = [store.cliente(saldo) for saldo in ("30.00", "12.50", "100.00", "0.99")]
    produtos = [
        store.produto(preco, estoque) for preco, estoque in (("9.90", 3), ("2.50", 6), ("1.00", 1))
    ]
    return clientes, produtos


def random_orders(clientes: list[int], produtos: list[int], count: int) -> list[PedidoRequest]:
    rng = random.Random(7)
    unknown = max(produtos) + 1000
    orders = []
    for _ in range(count):
        choices = [*produtos, unknown] if rng.random() < 0.1 else produtos
        chosen = rng.sample(choices, rng.randint(1, min(3, len(choices))))
        cliente = rng.choice([*clientes, max(clientes) + 1000])
        orders.append(
            PedidoRequest(cliente, tuple(ItemRequest(p, rng.randint(1, 3)) for p in chosen))
        )
    return orders


def catalog_state(
    sessions: sessionmaker[Session],
) -> tuple[list[tuple[Decimal, ...]], list[tuple[int, ...]]]:
    with sessions.begin() as session:
        saldos = [tuple(r) for r in session.execute(select(Cliente.saldo).order_by(Cliente.id))]
        estoques = [tuple(r) for r in session.execute(select(Produto.estoque).order_by(Produto.id))]
    return saldos, estoques


def test_a_batch_decides_exactly_as_one_by_one(
    sessions: sessionmaker[Session], store: Store
) -> None:
    clientes, produtos = scarce_catalog(store)
    orders = random_orders(clientes, produtos, 40)

    one_by_one: list[str] = []
    for order in orders:
        try:
            with sessions.begin() as session:
                place_pedido(session, order)
            one_by_one.append("ok")
        except PedidoRejeitado as rejection:
            one_by_one.append(rejection.reason)
    expected_state = catalog_state(sessions)

    reset(sessions.kw["bind"])
    clientes, produtos = scarce_catalog(store)
    orders = random_orders(clientes, produtos, 40)
    before = store.ledger()
    with sessions.begin() as session:
        batched = place_pedidos(session, orders)

    assert ["ok" if isinstance(o, PedidoResult) else o.reason for o in batched] == one_by_one
    assert Counter(one_by_one)["ok"] > 0 and len(set(one_by_one)) >= 4  # a real mix
    assert catalog_state(sessions) == expected_state
    assert violations(before, store.ledger()) == []
    with sessions.begin() as session:
        assert (
            missing_pedidos(session, [o.id for o in batched if isinstance(o, PedidoResult)]) == []
        )


def test_batched_processor_sells_exactly_the_stock(store: Store) -> None:
    produto = store.produto("1.00", 10)
    clientes = [store.cliente("100.00") for _ in range(60)]
    transactions = [0]

    def count(*_args: object) -> None:
        transactions[0] += 1

    event.listen(store.sessions, "after_begin", count)
    processor = PedidoProcessor(
        store.sessions, workers=2, queue_size=64, max_retries=5, batch_size=32
    )
    try:
        futures = release_together(
            60, lambda i: processor.submit(order_request(clientes[i], produto))
        )
        outcomes: Counter[str] = Counter()
        for future in futures:
            assert not isinstance(future, BaseException)
            try:
                future.result(timeout=60)
                outcomes["ok"] += 1
            except PedidoRejeitado as rejection:
                outcomes[rejection.reason] += 1
    finally:
        processor.shutdown()
        event.remove(store.sessions, "after_begin", count)

    assert outcomes == {"ok": 10, "estoque_insuficiente": 50}
    assert store.estoque(produto) == 0
    stats = processor.stats()
    # Orders shared transactions: two workers took 60 orders in far fewer than 60.
    assert stats.batches >= 2, stats
    assert transactions[0] <= 30, transactions
    assert (stats.completed, stats.rejected) == (10, {"estoque_insuficiente": 50})
    assert (stats.queued, stats.running) == (0, 0)


def five_orders(store: Store) -> list[Job]:
    clientes = [store.cliente("10.00") for _ in range(5)]
    produto = store.produto("1.00", 100)
    return [order_request(c, produto) for c in clientes]


@pytest.mark.parametrize("landed", [True, False], ids=["commit-landed", "commit-lost"])
def test_a_batch_whose_commit_connection_drops_is_never_doubled(
    sessions: sessionmaker[Session], store: Store, landed: bool
) -> None:
    jobs = five_orders(store)
    failures = [1]

    def lose_the_connection_once(_session: Session) -> None:
        if failures:
            failures.pop()
            raise lost_connection()

    hook = "after_commit" if landed else "before_commit"
    event.listen(sessions, hook, lose_the_connection_once)
    try:
        batch = run_batch(sessions, place_pedidos, jobs, max_retries=3)
    finally:
        event.remove(sessions, hook, lose_the_connection_once)

    assert all(isinstance(o, PedidoResult) for o in batch.outcomes), batch
    assert store.count(Pedido) == 5 and store.estoque(produto_of(jobs)) == 95
    assert batch.retries == (() if landed else ("connection_lost",))


def test_an_error_the_server_answers_at_commit_is_retried_without_a_lookup(
    sessions: sessionmaker[Session], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Galera refuses a conflicting write set at COMMIT with 1213, already rolled back: the
    outcome is known, so the batch is retried at once, with no lookup of a lost COMMIT."""
    jobs = five_orders(store)
    lookups: list[object] = []
    monkeypatch.setattr(running, "_after_dropped_commit", lambda *args: lookups.append(args))
    failures = [1]

    def certification_failure(_session: Session) -> None:
        if failures:
            failures.pop()
            raise mysql_error(1213)

    event.listen(sessions, "before_commit", certification_failure)
    try:
        batch = run_batch(sessions, place_pedidos, jobs, max_retries=3)
    finally:
        event.remove(sessions, "before_commit", certification_failure)

    assert all(isinstance(o, PedidoResult) for o in batch.outcomes), batch
    assert (batch.retries, lookups) == (("1213",), [])
    assert store.count(Pedido) == 5


def test_a_failed_batch_is_logged_with_the_drivers_message_not_its_statement(
    sessions: sessionmaker[Session], store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch's statements hold its orders' values: the warning names the error only."""
    jobs = five_orders(store)
    failures = [1]

    def failing_once(session: Session, requests: Sequence[PedidoRequest]) -> list[Settled]:
        if failures:
            failures.pop()
            raise mysql_error(1062, statement="INSERT ... ('payload 7')", message="Duplicate")
        return place_pedidos(session, requests)

    with caplog.at_level(logging.WARNING, logger="pedidos.orders.batches"):
        batch = run_batch(sessions, failing_once, jobs, max_retries=3)

    assert all(isinstance(o, PedidoResult) for o in batch.outcomes), batch
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "OperationalError: (1062, 'Duplicate')" in warning
    assert "payload 7" not in warning and "INSERT" not in warning


def produto_of(jobs: list[Job]) -> int:
    first = jobs[0]
    assert isinstance(first, PedidoRequest)
    return first.itens[0].produto_id


@pytest.fixture
def proxied(mariadb_url: str) -> Iterator[tuple[sessionmaker[Session], Any]]:
    """Sessions that reach MariaDB through a proxy able to break a COMMIT in flight."""
    parsed = make_url(mariadb_url)
    with commit_proxy(parsed.port or 3306, late_seconds=2.0) as proxy:
        url = parsed.set(port=proxy.port).render_as_string(hide_password=False)
        proxied_engine = make_engine(url, pool_size=4, lock_wait_timeout=10)
        try:
            yield make_sessions(proxied_engine), proxy
        finally:
            proxied_engine.dispose()


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
@pytest.mark.parametrize(
    ("action", "retried"),
    [
        (OnCommit.ANSWER_LOST, ()),
        (OnCommit.LOSE, ("connection_lost",)),
        (OnCommit.LATE, ()),
    ],
    ids=["server-committed", "server-rolled-back", "server-still-committing"],
)
def test_a_commit_cut_off_in_flight_is_settled_exactly_once(
    store: Store, proxied: tuple[sessionmaker[Session], Any], action: OnCommit, retried: tuple[str]
) -> None:
    sessions, proxy = proxied
    jobs = five_orders(store)
    proxy.arm(action)

    batch = run_batch(sessions, place_pedidos, jobs, max_retries=3)

    assert proxy.handled == [action]  # the COMMIT really was cut off
    assert all(isinstance(o, PedidoResult) for o in batch.outcomes), batch
    assert batch.retries == retried
    # Still committing: a non-locking look would have found nothing and ordered again.
    assert store.count(Pedido) == 5 and store.estoque(produto_of(jobs)) == 95
    with store.sessions.begin() as session:
        ids = [o.id for o in batch.outcomes if isinstance(o, PedidoResult)]
        assert missing_pedidos(session, ids) == []


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_when_a_commit_cannot_be_read_back_each_caller_gets_its_own_answer(
    store: Store, proxied: tuple[sessionmaker[Session], Any]
) -> None:
    sessions, proxy = proxied
    produto = store.produto("4.00", 100)
    rich = [store.cliente("10.00") for _ in range(3)]
    poor = [store.cliente("1.00") for _ in range(2)]
    jobs: list[Job] = [order_request(c, produto) for c in rich + poor]
    proxy.arm(OnCommit.LOSE)

    def cut_everything(_session: Session) -> None:
        proxy.outage(True)  # from here on the database cannot be reached

    event.listen(sessions, "before_commit", cut_everything, once=True)
    try:
        batch = run_batch(sessions, place_pedidos, jobs, max_retries=3)
    finally:
        proxy.outage(False)

    unknown = [o for o in batch.outcomes if isinstance(o, CommitOutcomeUnknown)]
    rejected = [o for o in batch.outcomes if isinstance(o, SaldoInsuficiente)]
    assert (len(unknown), len(rejected)) == (3, 2), batch
    assert len({o.solicitacao_id for o in unknown}) == 3  # each caller its own id
    assert [o.cliente_id for o in rejected] == poor
    assert store.count(Pedido) == 0  # it was lost: nothing of it persisted
