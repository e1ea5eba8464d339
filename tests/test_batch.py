"""Batched direct orders: one transaction for many, exactly the outcomes of one by one."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from pedidos.batch import place_batch
from pedidos.invariants import missing_pedidos, violations
from pedidos.models import Cliente, Pedido, Produto
from pedidos.processor import PedidoProcessor
from pedidos.running import Outcome, run_batch
from pedidos.seed import reset
from pedidos.service import (
    ItemRequest,
    PedidoRejeitado,
    PedidoRequest,
    PedidoResult,
    place_pedido,
)
from tests.conftest import Store
from tests.test_concurrency import release_together
from tests.test_durable import lost_connection

MakeProcessor = Callable[..., PedidoProcessor]


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
        batched = place_batch(session, orders)

    assert ["ok" if isinstance(o, PedidoResult) else o.reason for o in batched] == one_by_one
    assert Counter(one_by_one)["ok"] > 0 and len(set(one_by_one)) >= 4  # a real mix
    assert catalog_state(sessions) == expected_state
    assert violations(before, store.ledger()) == []
    with sessions.begin() as session:
        assert (
            missing_pedidos(session, [o.id for o in batched if isinstance(o, PedidoResult)]) == []
        )


def test_batched_processor_sells_exactly_the_stock(
    store: Store, make_processor: MakeProcessor
) -> None:
    produto = store.produto("1.00", 10)
    clientes = [store.cliente("100.00") for _ in range(60)]
    processor = PedidoProcessor(
        store.sessions, workers=2, queue_size=64, max_retries=5, batch_size=32
    )
    try:
        futures = release_together(
            60, lambda i: processor.submit(PedidoRequest(clientes[i], (ItemRequest(produto, 1),)))
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

    assert outcomes == {"ok": 10, "estoque_insuficiente": 50}
    assert store.estoque(produto) == 0
    stats = processor.stats()
    assert stats.batches < 60  # orders shared transactions
    assert (stats.completed, stats.rejected) == (10, {"estoque_insuficiente": 50})


@pytest.mark.parametrize("landed", [True, False], ids=["commit-landed", "commit-lost"])
def test_a_batch_whose_commit_connection_drops_is_never_doubled(
    sessions: sessionmaker[Session], store: Store, landed: bool
) -> None:
    clientes = [store.cliente("10.00") for _ in range(5)]
    produto = store.produto("1.00", 100)
    jobs: list[PedidoRequest | None] = [
        PedidoRequest(c, (ItemRequest(produto, 1),)) for c in clientes
    ]
    failures = [1]

    def lose_the_connection_once(_session: Session) -> None:
        if failures:
            failures.pop()
            raise lost_connection()

    hook = "after_commit" if landed else "before_commit"
    event.listen(sessions, hook, lose_the_connection_once)
    try:
        outcomes = run_batch(sessions, jobs, max_retries=3)
    finally:
        event.remove(sessions, hook, lose_the_connection_once)

    results = [o.result for o in outcomes if isinstance(o, Outcome)]
    assert len(results) == 5 and all(r is not None for r in results)
    assert store.count(Pedido) == 5 and store.estoque(produto) == 95
    retried = outcomes[0].retries if isinstance(outcomes[0], Outcome) else ()
    assert retried == (() if landed else ("connection_lost",))
