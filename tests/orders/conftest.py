"""Fixtures of the order tests: processors on the test's database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pedidos.orders.processor import PedidoProcessor
from pedidos.orders.transaction import Work, place_pedidos
from tests.helpers import MakeProcessor


@pytest.fixture
def make_processor(sessions: sessionmaker[Session]) -> Iterator[MakeProcessor]:
    """Build processors on the test's database; all are shut down after the test."""
    built: list[PedidoProcessor] = []

    def build(
        work: Work = place_pedidos,
        workers: int = 16,
        queue_size: int = 256,
        max_retries: int = 5,
        batch_size: int = 1,
    ) -> PedidoProcessor:
        processor = PedidoProcessor(
            sessions,
            workers=workers,
            queue_size=queue_size,
            max_retries=max_retries,
            work=work,
            batch_size=batch_size,
        )
        built.append(processor)
        return processor

    yield build
    for processor in built:
        processor.shutdown()
