"""The outcome line of every order settled in a batch: its own, with its request's id."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from pedidos.orders.outcome_log import BatchLog
from pedidos.orders.processor import Answer
from pedidos.orders.transaction import PedidoResult
from pedidos.tracing import request_id
from tests.helpers import MakeProcessor, Store, held_until, order_request, outcomes_of


def test_every_order_of_a_batch_logs_its_own_line(
    store: Store, make_processor: MakeProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    cliente = store.cliente("100.00")
    produto = store.produto("1.00", 3)
    release = threading.Event()
    processor = make_processor(work=held_until(release), workers=1, batch_size=8)
    answers: list[Answer[PedidoResult]] = []
    with caplog.at_level(logging.INFO, logger="pedidos"):
        # The first order holds the only worker; the next five wait and form one batch.
        for n, quantidade in enumerate((1, 1, 1, 5, 1, 1)):
            token = request_id.set(f"req-{n}")
            try:
                answers.append(processor.submit(order_request(cliente, produto, quantidade)))
            finally:
                request_id.reset(token)
            while n == 0 and processor.stats().running == 0:
                time.sleep(0.001)
        release.set()
        outcomes = outcomes_of(answers)

    lines = {r.__dict__["request_id"]: r for r in caplog.records if r.msg == "order %s"}
    assert sorted(lines) == [f"req-{n}" for n in range(6)]
    batch = [lines[f"req-{n}"] for n in range(1, 6)]
    assert [r.__dict__["batch"] for r in batch] == [5] * 5
    # Stock 3: the first two of the batch buy the last two units, the rest are refused.
    assert [r.getMessage() for r in batch] == [
        "order concluido",
        "order concluido",
        "order rejeitado",
        "order rejeitado",
        "order rejeitado",
    ]
    for record, outcome in zip(batch, outcomes[1:], strict=True):
        if isinstance(outcome, PedidoResult):
            assert record.__dict__["pedido_id"] == outcome.id
            assert "reason" not in record.__dict__
        else:
            assert record.__dict__["reason"] == "estoque_insuficiente"
            assert "pedido_id" not in record.__dict__
    assert {r.funcName for r in batch} == {lines["req-0"].funcName}
    assert all(r.threadName != threading.current_thread().name for r in batch)


def test_a_batch_log_honours_the_level_and_the_filters() -> None:
    logger = logging.getLogger("pedidos.tests.outcome_log")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.setLevel(logging.WARNING)
        BatchLog(logger).write("concluido", {"pedido_id": 1})
        assert seen == []

        logger.setLevel(logging.INFO)
        handler.addFilter(lambda record: record.__dict__.get("pedido_id") != 2)
        lines = BatchLog(logger)
        for pedido_id in (1, 2, 3):
            lines.write("concluido", {"pedido_id": pedido_id})
        assert [r.__dict__["pedido_id"] for r in seen] == [1, 3]
        assert seen[0] is not seen[1] and seen[0].args == seen[1].args == ("concluido",)
    finally:
        logger.removeHandler(handler)
