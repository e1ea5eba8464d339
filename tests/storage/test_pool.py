"""The pool's liveness check: every checkout pings first and replaces a dead connection,
except an order batch's (it retries on a lost connection anyway); and no connection goes
back to the pool with a ROLLBACK round trip or with its open work."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from pedidos.orders.batches import run_batch
from pedidos.orders.transaction import (
    ClienteNaoEncontrado,
    ItemRequest,
    PedidoRequest,
    Settled,
)
from pedidos.storage.engine import make_engine, make_sessions

pytestmark = pytest.mark.mariadb


def connection_id(engine: Engine) -> int:
    with engine.connect() as connection:
        found: int = connection.execute(text("SELECT CONNECTION_ID()")).scalar_one()
        return found


def kill(engine: Engine, victim: int) -> None:
    with engine.connect() as connection:
        connection.execute(text(f"KILL CONNECTION {int(victim)}"))


def counted(engine: Engine, method: str, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every call the engine's dialect makes to `method` (do_ping, do_rollback)."""
    seen: list[object] = []
    original = getattr(engine.dialect, method)

    def counting(dbapi_connection: object) -> object:
        seen.append(dbapi_connection)
        return original(dbapi_connection)

    monkeypatch.setattr(engine.dialect, method, counting)
    return seen


@pytest.fixture
def engines(mariadb_url: str) -> Iterator[tuple[Engine, Engine]]:
    engine, other = make_engine(mariadb_url, pool_size=1), make_engine(mariadb_url, pool_size=1)
    yield engine, other
    engine.dispose()
    other.dispose()


def test_a_checkout_pings_and_replaces_a_dead_connection(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, other = engines
    first = connection_id(engine)
    pings = counted(engine, "do_ping", monkeypatch)
    kill(other, first)
    # The pool holds one connection, now dead: the ping finds out and a new one serves,
    # not pinged again (a connection made for a checkout is alive).
    assert connection_id(engine) != first
    assert len(pings) == 1


def test_a_connection_made_for_a_checkout_is_not_pinged(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = engines
    pings = counted(engine, "do_ping", monkeypatch)
    first = connection_id(engine)
    assert pings == []
    assert connection_id(engine) == first  # reused: pinged this time
    assert len(pings) == 1


def test_an_order_batch_skips_the_ping_and_retries_on_a_dead_connection(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, other = engines
    sessions = make_sessions(engine)
    used: list[int] = []

    def work(session: Session, requests: Sequence[PedidoRequest]) -> list[Settled]:
        used.append(session.execute(text("SELECT CONNECTION_ID()")).scalar_one())
        return [ClienteNaoEncontrado(request.cliente_id) for request in requests]

    first = connection_id(engine)
    pings = counted(engine, "do_ping", monkeypatch)
    kill(other, first)
    outcome = run_batch(sessions, work, [PedidoRequest(1, (ItemRequest(1, 1),))], max_retries=3)
    assert pings == []
    assert outcome.retries == ("connection_lost",)  # the dead one failed, a fresh one served
    assert isinstance(outcome.outcomes[0], ClienteNaoEncontrado)
    assert used and used[-1] != first


def test_a_connection_goes_back_without_a_rollback_and_without_its_open_work(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = engines
    connection_id(engine)  # the first connect's own setup ends in a rollback
    rollbacks = counted(engine, "do_rollback", monkeypatch)
    with engine.begin() as connection:
        connection.execute(text("CREATE TEMPORARY TABLE marca (n INT)"))
        connection.execute(text("INSERT INTO marca VALUES (1)"))
    assert rollbacks == []  # committed: nothing left to reset
    with engine.connect() as connection:  # the same pooled connection, left mid-work
        connection.execute(text("INSERT INTO marca VALUES (2)"))
    assert len(rollbacks) == 1  # the Connection rolled its own work back
    with engine.connect() as connection:
        kept = connection.execute(text("SELECT n FROM marca")).scalars().all()
    assert kept == [1]
