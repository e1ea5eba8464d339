"""The processor: which errors it retries, how it counts, and the process-pool mode."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from decimal import Decimal

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pedidos.orders.batches import (
    BACKOFF_CAP_SECONDS,
    RetriesExhausted,
    backoff_seconds,
    retry_code,
)
from pedidos.orders.processor import Answer, PedidoProcessor
from pedidos.orders.transaction import PedidoRequest, PedidoResult, Settled, place_pedidos
from tests.helpers import MakeProcessor, Store, mysql_error, order_request, outcomes_of


@pytest.mark.parametrize(
    ("error", "label"),
    [
        (mysql_error(1213), "1213"),
        (mysql_error(1205), "1205"),
        (mysql_error(1020), "1020"),
        (mysql_error(2013), "2013"),
        (mysql_error(2006, invalidated=True), "connection_lost"),
        (mysql_error(1064), None),  # syntax error: retrying cannot help
        (mysql_error(1062), None),  # duplicate key
        (OperationalError("x", {}, Exception("database is locked")), "sqlite_busy"),
    ],
)
def test_only_transient_errors_are_retried(error: OperationalError, label: str | None) -> None:
    assert retry_code(error) == label


def test_backoff_is_jittered_and_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_seconds(attempt, rng) for attempt in range(1, 30)]
    assert all(0 <= d <= BACKOFF_CAP_SECONDS for d in delays)
    assert len(set(delays)) == len(delays)


def test_persistent_deadlock_fails_after_bounded_retries(
    store: Store, make_processor: MakeProcessor
) -> None:
    cliente = store.cliente("10.00")
    produto = store.produto("1.00", 5)
    attempts: list[int] = []

    def always_deadlocks(session: Session, requests: Sequence[PedidoRequest]) -> list[Settled]:
        place_pedidos(session, requests)
        attempts.append(1)
        raise mysql_error(1213)

    processor = make_processor(work=always_deadlocks, max_retries=3)
    future = processor.submit(order_request(cliente, produto))

    with pytest.raises(RetriesExhausted) as failure:
        future.result(timeout=30)
    assert (failure.value.code, failure.value.attempts, len(attempts)) == ("1213", 4, 4)
    stats = processor.stats()
    assert (stats.failed, stats.completed, stats.retries) == (1, 0, {"1213": 3})
    assert (store.saldo(cliente), store.estoque(produto)) == (
        Decimal("10.00"),
        5,
    )  # every attempt rolled back


def test_process_pool_runs_orders_with_its_own_engines(
    sessions: sessionmaker[Session], store: Store, database_url: str
) -> None:
    cliente = store.cliente("100.00")
    produto = store.produto("3.00", 10)
    processor = PedidoProcessor(
        sessions,
        workers=2,
        queue_size=16,
        max_retries=3,
        executor="process",
        database_url=database_url,
    )
    try:
        futures = [processor.submit(order_request(cliente, produto)) for _ in range(12)]
        outcomes = outcomes_of(futures)
    finally:
        processor.shutdown()

    assert sum(isinstance(o, PedidoResult) for o in outcomes) == 10
    assert processor.stats().rejected == {"estoque_insuficiente": 2}
    assert store.estoque(produto) == 0
    assert store.saldo(cliente) == Decimal("70.00")


def test_an_answer_is_waited_for_once_set_and_then_read_by_anyone() -> None:
    waiting: Answer[int] = Answer()
    with pytest.raises(TimeoutError):
        waiting.result(timeout=0.05)
    threading.Timer(0.1, waiting.set_result, (7,)).start()
    started = time.monotonic()
    assert waiting.result(timeout=5) == 7
    assert time.monotonic() - started >= 0.05  # it did wait for the worker
    assert waiting.result(timeout=0) == 7  # and reads again at once, as often as asked

    failed: Answer[int] = Answer()
    failed.set_exception(LookupError("gone"))
    for _ in range(2):
        with pytest.raises(LookupError, match="gone"):
            failed.result(timeout=0)
    with pytest.raises(TimeoutError):
        Answer[int]().result(timeout=-1)  # a negative timeout polls, as for a Future


def test_an_answer_wakes_every_waiter_and_is_given_once() -> None:
    answer: Answer[str] = Answer()
    got: list[str] = []
    waiters = [
        threading.Thread(target=lambda: got.append(answer.result(timeout=5))) for _ in range(8)
    ]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.05)
    answer.set_result("first")
    for waiter in waiters:
        waiter.join(5)
    assert got == ["first"] * 8
    with pytest.raises(RuntimeError):
        answer.set_result("second")
    with pytest.raises(RuntimeError):
        answer.set_exception(LookupError("late"))
    assert answer.result(timeout=0) == "first"
