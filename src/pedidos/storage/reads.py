"""Expensive reads (report pages, summaries, CSV exports) kept away from the orders.

They get their own small connection pool, so that however many arrive they never hold a
connection an order needs; each statement has a server-side time limit (MariaDB's
max_statement_time, an interrupting progress handler on SQLite); and concurrent CSV exports
are capped. When the pool is full or a query runs out of time the caller is refused at once (the web
layer answers 503 with Retry-After) instead of joining a queue that grows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from pedidos.storage.engine import (
    READ_ONLY_OPTION,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    make_server_engine,
    mysql_code,
    resolve_driver,
)

# A read waits this long for a free connection, then is refused: a queue of slow reads
# would hold the server's request threads just the same.
POOL_WAIT_SECONDS = 0.5
# MariaDB's "Query execution was interrupted (max_statement_time exceeded)".
MAX_STATEMENT_TIME_EXCEEDED = 1969
SQLITE_CHECK_EVERY = 10_000  # virtual machine instructions between deadline checks


def make_read_engine(database_url: str, pool_size: int, statement_seconds: float) -> Engine:
    """An engine of its own for reads, every statement limited to `statement_seconds`."""
    url = resolve_driver(database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_read_engine(database_url, pool_size, statement_seconds)
    # Enforced by the server: a runaway query stops even if this process is stuck.
    return make_server_engine(
        url,
        pool_size,
        POOL_WAIT_SECONDS,
        f"SET SESSION max_statement_time = {float(statement_seconds):.3f}",
    )


def _sqlite_read_engine(database_url: str, pool_size: int, statement_seconds: float) -> Engine:
    engine = create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=POOL_WAIT_SECONDS,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
    ).execution_options(**{READ_ONLY_OPTION: True})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()
        deadline = record.info.setdefault("deadline", [float("inf")])
        # Returning true makes SQLite abort the statement with "interrupted".
        dbapi_connection.set_progress_handler(
            lambda: time.monotonic() > deadline[0], SQLITE_CHECK_EVERY
        )

    @event.listens_for(engine, "before_cursor_execute")
    def _start_clock(connection: Any, *_args: Any) -> None:
        connection.connection.info["deadline"][0] = time.monotonic() + statement_seconds

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


class ReadsBusy(Exception):
    """Every connection for reads is taken."""


class ReadTooSlow(Exception):
    """A read ran past its server-side time limit."""

    def __init__(self, limit_seconds: float) -> None:
        super().__init__(f"the query ran past its {limit_seconds:g} s limit")
        self.limit_seconds = limit_seconds


def timed_out(error: OperationalError) -> bool:
    return mysql_code(error) == MAX_STATEMENT_TIME_EXCEEDED or "interrupted" in str(error.orig)


class Reads:
    """The read pool, its sessions and the CSV export slots."""

    def __init__(
        self, database_url: str, pool_size: int, statement_seconds: float, csv_exports: int
    ) -> None:
        # One connection more per export slot: exports hold theirs until they finish.
        self.engine = make_read_engine(database_url, pool_size + csv_exports, statement_seconds)
        self.statement_seconds = statement_seconds
        self._exports = threading.BoundedSemaphore(csv_exports)

    @contextmanager
    def session(self, connection: Connection | None = None) -> Iterator[Session]:
        """A read-only session (on `connection` when given); a full pool raises ReadsBusy, a
        statement past its limit ReadTooSlow."""
        try:
            with (
                Session(connection or self.engine, expire_on_commit=False) as session,
                session.begin(),
            ):
                yield session
        except PoolTimeout:
            raise ReadsBusy() from None
        except OperationalError as error:
            if not timed_out(error):
                raise
            raise ReadTooSlow(self.statement_seconds) from None

    def export_connection(self) -> Connection:
        """A connection an export keeps from its first page to its last, so that a busy pool
        can refuse an export before it starts but never cut one short."""
        try:
            return self.engine.connect()
        except PoolTimeout:
            raise ReadsBusy() from None

    def export_slot(self) -> bool:
        """Take a CSV export slot without waiting; False when all are taken."""
        return self._exports.acquire(blocking=False)

    def release_export(self) -> None:
        self._exports.release()

    def close(self) -> None:
        self.engine.dispose()
