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
