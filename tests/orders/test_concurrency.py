"""Real threads racing on real MariaDB (and SQLite): money and stock stay exact."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from pedidos.app import create_app
from pedidos.bench.baseline import make_naive, naive_read_modify_write
from pedidos.config import Settings
from pedidos.orders.invariants import missing_pedidos, violations
from pedidos.orders.processor import Answer, PedidoProcessor
from pedidos.orders.transaction import (
    ItemRequest,
    PedidoRejeitado,
    PedidoRequest,
    PedidoResult,
    SaldoInsuficiente,
    Settled,
    place_pedidos,
)
from pedidos.storage.models import Produto
from tests.helpers import (
    MakeProcessor,
    Store,
    order_request,
    outcomes_of,
    release_together,
    runtime_of,
    serving,
)


def submit_together(
    processor: PedidoProcessor, requests: list[PedidoRequest]
) -> list[PedidoResult | Exception]:
    """Submit every request from its own thread at the same instant; wait for all outcomes."""
    answers: list[Answer[PedidoResult]] = [
        a
        for a in release_together(len(requests), lambda i: processor.submit(requests[i]))
        if isinstance(a, Answer)
    ]
    assert len(answers) == len(requests)
    return outcomes_of(answers)


@pytest.mark.parametrize("batch_size", [1, 16], ids=["one-by-one", "batched"])
def test_many_mixed_orders_keep_every_invariant(
    store: Store, make_processor: MakeProcessor, batch_size: int
) -> None:
    rng = random.Random(11)
    clientes = [store.cliente(f"{rng.randint(20, 300)}.{rng.randint(0, 99):02d}") for _ in range(6)]
    produtos = [
        store.produto(f"{rng.randint(1, 40)}.{rng.randint(0, 99):02d}", 8) for _ in range(5)
    ]
    requests = [
        PedidoRequest(
            rng.choice(clientes),
            tuple(
                ItemRequest(p, rng.randint(1, 3)) for p in rng.sample(produtos, rng.randint(1, 3))
            ),
        )
        for _ in range(48)
    ]
    before = store.ledger()

    outcomes = submit_together(make_processor(workers=16, batch_size=batch_size), requests)

    committed = [o for o in outcomes if isinstance(o, PedidoResult)]
    rejected = [o for o in outcomes if isinstance(o, PedidoRejeitado)]
    assert len(committed) + len(rejected) == len(requests), outcomes
    assert committed and rejected  # the scenario is sized to produce both
    after = store.ledger()
    assert violations(before, after) == []
    # Fully committed or fully absent: exactly the acknowledged orders, each with all its items.
    assert after.pedidos - before.pedidos == len(committed)
    assert after.unidades - before.unidades == sum(i.quantidade for o in committed for i in o.itens)
    assert after.vendido - before.vendido == sum((o.total for o in committed), Decimal(0))
    with store.sessions.begin() as session:
        assert missing_pedidos(session, [o.id for o in committed]) == []


def test_scarce_stock_sells_exactly_what_exists(
    store: Store, make_processor: MakeProcessor
) -> None:
    produto = store.produto("1.00", 10)
    clientes = [store.cliente("100.00") for _ in range(40)]

    outcomes = submit_together(
        make_processor(workers=20), [order_request(c, produto) for c in clientes]
    )

    kinds = Counter(type(o).__name__ for o in outcomes)
    assert kinds == {"PedidoResult": 10, "EstoqueInsuficiente": 30}
    assert store.estoque(produto) == 0
    assert store.ledger().unidades == 10


@pytest.mark.parametrize("batch_size", [1, 16], ids=["one-by-one", "batched"])
def test_poor_cliente_never_goes_negative(
    store: Store, make_processor: MakeProcessor, batch_size: int
) -> None:
    cliente = store.cliente("50.00")
    produto = store.produto("10.00", 1000)

    outcomes = submit_together(
        make_processor(workers=4, batch_size=batch_size), [order_request(cliente, produto)] * 30
    )

    assert sum(isinstance(o, PedidoResult) for o in outcomes) == 5
    assert sum(isinstance(o, SaldoInsuficiente) for o in outcomes) == 25
    assert store.saldo(cliente) == Decimal("0.00")
    assert store.estoque(produto) == 995


def test_failure_after_the_writes_before_commit_leaves_nothing_behind(
    store: Store, make_processor: MakeProcessor
) -> None:
    victim = store.cliente("500.00")
    others = [store.cliente("500.00") for _ in range(3)]
    produto = store.produto("2.50", 1000)

    def crash_after_writes(session: Session, requests: Sequence[PedidoRequest]) -> list[Settled]:
        settled = place_pedidos(session, requests)
        if any(isinstance(o, PedidoResult) and o.cliente_id == victim for o in settled):
            raise RuntimeError("injected crash after the debits and inserts, before COMMIT")
        return settled

    requests = [order_request(victim if i % 4 == 0 else others[i % 3], produto) for i in range(24)]
    before = store.ledger()

    outcomes = submit_together(make_processor(work=crash_after_writes), requests)

    crashed = [o for o in outcomes if isinstance(o, RuntimeError)]
    committed = [o for o in outcomes if isinstance(o, PedidoResult)]
    assert (len(crashed), len(committed)) == (6, 18)
    assert store.saldo(victim) == Decimal("500.00")
    assert store.estoque(produto) == 1000 - 18
    after = store.ledger()
    assert violations(before, after) == []
    assert after.pedidos == 18
    with store.sessions.begin() as session:
        assert missing_pedidos(session, [o.id for o in committed]) == []


def lock_in_request_order(session: Session, requests: Sequence[PedidoRequest]) -> list[Settled]:
    """Deliberately ignores the global lock order, holding one row while asking for the next."""
    for request in requests:
        for item in request.itens:
            session.execute(
                select(Produto.id).where(Produto.id == item.produto_id).with_for_update()
            )
            time.sleep(0.02)
    return place_pedidos(session, requests)


def crossing_orders(clientes: list[int], a: int, b: int) -> list[PedidoRequest]:
    """Half the orders ask for a then b, the other half for b then a."""
    return [
        PedidoRequest(c, (ItemRequest(a, 1), ItemRequest(b, 1))[:: 1 if i % 2 else -1])
        for i, c in enumerate(clientes)
    ]


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_opposite_lock_orders_deadlock_and_are_retried(
    store: Store, make_processor: MakeProcessor
) -> None:
    a = store.produto("1.00", 1000)
    b = store.produto("1.00", 1000)
    clientes = [store.cliente("1000.00") for _ in range(20)]
    processor = make_processor(work=lock_in_request_order, workers=20, max_retries=50)

    outcomes = submit_together(processor, crossing_orders(clientes, a, b))

    assert all(isinstance(o, PedidoResult) for o in outcomes), outcomes
    stats = processor.stats()
    assert stats.retries.get("1213", 0) >= 1, stats
    assert (stats.completed, stats.failed) == (20, 0)
    assert (store.estoque(a), store.estoque(b)) == (980, 980)


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_deadlocks_behind_http_are_retried_not_500(store: Store, database_url: str) -> None:
    a = store.produto("1.00", 1000)
    b = store.produto("1.00", 1000)
    clientes = [store.cliente("1000.00") for _ in range(20)]
    bodies = [
        {
            "cliente_id": r.cliente_id,
            "itens": [{"produto_id": i.produto_id, "quantidade": 1} for i in r.itens],
        }
        for r in crossing_orders(clientes, a, b)
    ]
    settings = Settings(database_url=database_url, workers=20, max_retries=50)
    app = create_app(settings, work=lock_in_request_order)
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            responses = release_together(
                len(bodies), lambda i: client.post("/pedido", json=bodies[i])
            )
            status = client.get("/status").json()
    finally:
        runtime_of(app).close()

    codes = [r.status_code if isinstance(r, httpx.Response) else r for r in responses]
    assert codes == [201] * 20
    assert status["processor"]["retries"].get("1213", 0) >= 1, status
    assert status["processor"]["completed"] == 20


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
@pytest.mark.parametrize(
    ("workers", "batch_size"), [(20, 1), (4, 10)], ids=["one-by-one", "batched"]
)
def test_negative_control_the_checker_catches_a_naive_read_modify_write(
    store: Store, make_processor: MakeProcessor, workers: int, batch_size: int
) -> None:
    produto = store.produto("1.00", 10)
    clientes = [store.cliente("100.00") for _ in range(40)]
    # Batched, the race is between transactions of several orders: widen its window so that
    # the workers' batches read the same row before any of them writes.
    naive = naive_read_modify_write if batch_size == 1 else make_naive(think_seconds=0.1)
    processor = make_processor(work=naive, workers=workers, batch_size=batch_size)

    before = store.ledger()
    outcomes = submit_together(processor, [order_request(c, produto) for c in clientes])

    sold = sum(isinstance(o, PedidoResult) for o in outcomes)
    found = violations(before, store.ledger())
    if batch_size > 1:  # the race this control proves is one between batches
        assert processor.stats().batches >= 2, processor.stats()
    assert sold > 10, "the naive function did not oversell: the harness saw no race"
    assert any(line.startswith("stock not conserved") for line in found), found


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_concurrent_http_orders_keep_every_invariant(store: Store, live_server: str) -> None:
    produtos = [store.produto("7.90", 6) for _ in range(3)]
    clientes = [store.cliente("40.00") for _ in range(8)]
    rng = random.Random(5)
    bodies = [
        {
            "cliente_id": rng.choice(clientes),
            "itens": [
                {"produto_id": p, "quantidade": rng.randint(1, 2)} for p in rng.sample(produtos, 2)
            ],
        }
        for _ in range(32)
    ]
    before = store.ledger()

    with httpx.Client(base_url=live_server, timeout=60) as client:
        responses = release_together(len(bodies), lambda i: client.post("/pedido", json=bodies[i]))

    statuses = Counter(r.status_code for r in responses if isinstance(r, httpx.Response))
    assert sum(statuses.values()) == len(bodies), responses
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[201] > 0 and statuses[409] > 0
    acknowledged = [
        r.json()["id"] for r in responses if isinstance(r, httpx.Response) and r.status_code == 201
    ]
    after = store.ledger()
    assert violations(before, after) == []
    assert after.pedidos == len(acknowledged)
    with store.sessions.begin() as session:
        assert missing_pedidos(session, acknowledged) == []
