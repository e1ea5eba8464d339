"""Engine and session factory for SQLite and MariaDB/MySQL, and schema migrations."""

from __future__ import annotations

import hashlib
import os
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

# Below MariaDB's default wait_timeout (8 h) and any proxy idle cut-off we are likely to meet.
POOL_RECYCLE_SECONDS = 1800
SQLITE_BUSY_TIMEOUT_SECONDS = 30
# Every checkout pings the connection first (one round trip), so that a dead one is replaced
# before anyone uses it; except where the caller retries on a lost connection anyway (order
# batches) and sets this for the checkouts it makes.
skip_ping: ContextVar[bool] = ContextVar("skip_ping", default=False)
_FRESH = "pedidos_fresh"  # set on a pooled connection's record until its first checkout
READ_ONLY_OPTION = "pedidos_read_only"


def resolve_driver(database_url: str | URL) -> URL:
    """The URL with its MariaDB/MySQL driver chosen: a driver named in it (`mysql+pymysql://`)
    is kept; `mysql://` or `mariadb://` get mysqlclient when it is installed (it measured
    faster), else PyMySQL."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend in ("mysql", "mariadb") and "+" not in url.drivername:
        driver = "mysqldb" if find_spec("MySQLdb") is not None else "pymysql"
        url = url.set(drivername=f"{backend}+{driver}")
    return url


def describe_driver(engine: Engine) -> str:
    """Which database and driver an engine runs on, for the operator: `mysql+mysqldb`."""
    return f"{engine.dialect.name}+{engine.dialect.driver}"


def mysql_code(error: DBAPIError) -> int | None:
    """The MariaDB/MySQL error number behind `error` (its drivers raise (code, text)), if any."""
    args = getattr(error.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def make_engine(database_url: str, pool_size: int = 8, lock_wait_timeout: int = 10) -> Engine:
    """Build the process's one Engine, tuned for the database behind the URL."""
    url = resolve_driver(database_url)
    if url.get_backend_name() == "sqlite":
        return _make_sqlite_engine(database_url, pool_size)
    # A short lock wait turns a stuck lock into error 1205, which is retried, instead of
    # holding a worker for InnoDB's default 50 s.
    return make_server_engine(
        url, pool_size, 30.0, f"SET SESSION innodb_lock_wait_timeout = {int(lock_wait_timeout)}"
    )


def make_server_engine(url: URL, pool_size: int, pool_timeout: float, session_sql: str) -> Engine:
    """A MariaDB/MySQL engine whose every new connection first runs `session_sql`."""
    engine = create_engine(
        url,
        pool_size=pool_size,
        # A mis-sized pool should show up as a pool timeout, not as hidden extra connections.
        max_overflow=0,
        pool_timeout=pool_timeout,
        pool_recycle=POOL_RECYCLE_SECONDS,
        # No ROLLBACK round trip when a connection goes back: every use is a SQLAlchemy
        # Connection, which ends its own transaction first (commit, or rollback on close).
        pool_reset_on_return=None,
    )
    dbapi_error = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # A connection made for this checkout is alive: pinging it again could only fail
        # where using it fails too, and would have the pool reconnect in a loop.
        if record.info.pop(_FRESH, False) or skip_ping.get():
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except dbapi_error as error:
            raise DisconnectionError() from error  # the pool connects afresh and checks out

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(session_sql)
        cursor.close()
        record.info[_FRESH] = True

    return engine


def _make_sqlite_engine(database_url: str, pool_size: int) -> Engine:
    url = make_url(database_url)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy so that "begin" below decides how to BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # SQLite ignores SELECT ... FOR UPDATE: writers take turns by locking at BEGIN.
        # Readers begin deferred, so that WAL lets them read while a writer works.
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def make_sessions(engine: Engine, read_only: bool = False) -> sessionmaker[Session]:
    """Session factory; every unit of work opens its own `with sessions.begin():`.

    `read_only` sessions are for queries that write nothing (reports, lookups): on SQLite
    they do not queue behind writers.
    """
    bind = engine.execution_options(**{READ_ONLY_OPTION: True}) if read_only else engine
    return sessionmaker(bind, expire_on_commit=False)


def alembic_config(database_url: str) -> Config:
    """Alembic configuration pointing at the migrations shipped inside the package."""
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("pedidos.storage") / "migrations")
    )
    url = resolve_driver(database_url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_schema(database_url: str) -> None:
    """Create or upgrade the schema to the newest migration."""
    command.upgrade(alembic_config(database_url), "head")


def newest_revision() -> str:
    """The revision the shipped migrations lead to."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:  # the package ships its migrations: only a broken install has none
        raise RuntimeError("no migrations found in this installation of pedidos")
    return head


def schema_revision(engine: Engine) -> str | None:
    """The migration the database is at; None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class SchemaChange:
    """What `migrate` did: revisions before and after (None: there was no schema)."""

    before: str | None
    after: str | None

    def describe(self) -> str:
        if self.before == self.after:
            return f"already current at revision {self.after}: nothing to do"
        if self.before is None:
            return f"created the schema (revision {self.after})"
        return f"upgraded from revision {self.before} to {self.after}"


def migrate(database_url: str) -> SchemaChange:
    """Upgrade to the newest migration and say what changed."""
    engine = make_engine(database_url, pool_size=1)
    try:
        before = schema_revision(engine)
        upgrade_schema(database_url)
        return SchemaChange(before, schema_revision(engine))
    finally:
        engine.dispose()


def describe_url(database_url: str) -> str:
    """The URL with its password masked; a SQLite file also with its absolute path."""
    url = make_url(database_url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return f"{shown} ({os.path.abspath(url.database)})"
    return shown


def database_identity(engine: Engine) -> str:
    """A short fingerprint of the database itself, the same from every client that reaches it.

    Two processes compare it to know that they work on one database, whatever URL (host
    alias, relative path) each was given. It reveals no host name or path.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql("PRAGMA database_list").all()
            path = next((row[2] for row in rows if row[1] == "main"), "") or ":memory:"
            parts = ["sqlite", os.path.realpath(path) if path != ":memory:" else f"mem{id(engine)}"]
        else:
            row = connection.execute(
                text("SELECT @@hostname, @@port, @@datadir, @@server_id, DATABASE()")
            ).one()
            parts = [engine.dialect.name, *(str(value) for value in row)]
            # Galera nodes are one database: name the cluster, not the node.
            cluster = connection.execute(
                text("SHOW STATUS LIKE 'wsrep_cluster_state_uuid'")
            ).first()
            if cluster is not None and cluster[1]:
                parts = [engine.dialect.name, "galera", str(cluster[1]), str(row[4])]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
