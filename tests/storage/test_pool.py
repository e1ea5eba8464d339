"""The pool's liveness check: a connection idle for a while is pinged before it is handed
out, and a dead one is replaced; a connection reused at once is not pinged."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from pedidos.storage import engine as engine_module
from pedidos.storage.engine import make_engine

pytestmark = pytest.mark.mariadb


def connection_id(engine: Engine) -> int:
    with engine.connect() as connection:
        found: int = connection.execute(text("SELECT CONNECTION_ID()")).scalar_one()
        return found


def kill(engine: Engine, victim: int) -> None:
    with engine.connect() as connection:
        connection.execute(text(f"KILL CONNECTION {int(victim)}"))


def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    seen: list[object] = []
    ping = engine.dialect.do_ping

    def counting(dbapi_connection: object) -> bool:
        seen.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting)
    return seen


def test_a_connection_idle_long_enough_is_pinged_and_a_dead_one_replaced(
    mariadb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    engine = make_engine(mariadb_url, pool_size=1)
    other = make_engine(mariadb_url, pool_size=1)
    try:
        seen = pings(engine, monkeypatch)
        first = connection_id(engine)
        kill(other, first)
        # The pool holds one connection, now dead: the ping finds out and a new one serves.
        second = connection_id(engine)
        assert second != first
        assert len(seen) == 1
    finally:
        engine.dispose()
        other.dispose()


def test_a_connection_reused_at_once_is_not_pinged(
    mariadb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    engine = make_engine(mariadb_url, pool_size=1)
    try:
        seen = pings(engine, monkeypatch)
        ids = {connection_id(engine) for _ in range(5)}
        assert len(ids) == 1
        assert seen == []
    finally:
        engine.dispose()


def test_a_connection_goes_back_without_a_rollback_and_without_its_open_work(
    mariadb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(mariadb_url, pool_size=1)
    try:
        connection_id(engine)  # the first connect's own setup ends in a rollback
        rollbacks: list[object] = []
        rollback = engine.dialect.do_rollback

        def counting(dbapi_connection: object) -> None:
            rollbacks.append(dbapi_connection)
            rollback(dbapi_connection)

        monkeypatch.setattr(engine.dialect, "do_rollback", counting)
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
    finally:
        engine.dispose()
