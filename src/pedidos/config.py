"""Service settings, read once from environment variables."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

ExecutorKind = Literal["thread", "process"]
Environment = Literal["development", "production"]
LogFormat = Literal["auto", "json", "text"]

DEFAULT_DATABASE_URL = "sqlite:///instance/pedidos.sqlite3"
MAX_INSTANCE_NAME = 100
# Loopback names only: a deployment lists its public host names in PEDIDOS_ALLOWED_HOSTS.
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "::1")


class SettingsError(ValueError):
    """A configuration value is missing or malformed."""


Number = TypeVar("Number", int, float)


def _number(env: Mapping[str, str], name: str, default: Number, minimum: Number) -> Number:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = type(default)(raw)
    except ValueError:
        kind = "a whole number" if isinstance(default, int) else "a number"
        raise SettingsError(f"{name} must be {kind}, got {raw!r}") from None
    if not value >= minimum:  # also refuses NaN
        raise SettingsError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, "") or allowed[0]
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


# Main-pool connections for request threads (see Settings.pool_size).
REQUEST_CONNECTIONS = 16


@dataclass(frozen=True)
class Settings:
    """Everything the service can be tuned with; see docs/configuration.md."""

    database_url: str = DEFAULT_DATABASE_URL
    # Reports (order pages, summary, CSV) read here when set, e.g. a replica, so that long
    # aggregates never compete with orders for the primary's pool and locks.
    read_database_url: str | None = None
    # Labels this process's own figures (/status, dashboard) when several instances serve.
    instance_name: str = field(default_factory=socket.gethostname)
    # One transaction at a time per process, taking every order that waits: the orders that
    # arrive meanwhile gather into the next batch. Measured (docs/performance.md): as fast as
    # two workers in process, faster over HTTP, and far faster on a hot produto; more
    # processes, not more workers, put more cores to work.
    workers: int = 1
    queue_size: int = 256
    executor: ExecutorKind = "thread"
    max_retries: int = 5
    request_timeout: float = 30.0
    max_body_bytes: int = 64 * 1024
    environment: Environment = "development"
    idempotency_ttl_hours: float = 24.0
    lease_seconds: float = 30.0
    recovery_interval: float = 5.0
    max_attempts: int = 10
    lock_wait_timeout: int = 10
    batch_size: int = 64
    # Bearer token for administrative operations (starting simulations). Unset: allowed in
    # development, refused in production.
    admin_token: str | None = field(default=None, repr=False)
    log_format: LogFormat = "auto"  # auto: JSON unless stderr is a terminal
    # A bodiless POST /pedido places a random order (a demo); None: on only in development.
    random_orders: bool | None = None
    # Host header values served (hostnames, any port); "*" serves every host.
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS
    # Reports, summaries and CSV exports: their own connections, statement time and slots.
    read_pool_size: int = 4
    read_timeout: float = 5.0
    csv_exports: int = 2
    # A bodiless POST /pedido (a random order) is recorded durably and answered 202 at once,
    # as scripts that fire many and count 202s expect; off: it waits and answers 201 or 409.
    empty_body_async: bool = True

    @property
    def pool_size(self) -> int:
        """Connections: one per order worker, and sixteen for request threads, which hold one
        only for a short statement (recording a solicitacao, a key lookup, GET /pedido,
        /status). More of them at once wait their turn in the pool rather than open
        connections the database cannot afford (MariaDB's max_connections is 151)."""
        return self.workers + REQUEST_CONNECTIONS

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def random_orders_enabled(self) -> bool:
        return not self.production if self.random_orders is None else self.random_orders

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from PEDIDOS_* variables and DATABASE_URL."""
        env = os.environ if env is None else env
        executor = _choice(env, "PEDIDOS_EXECUTOR", ("thread", "process"))
        environment = _choice(env, "PEDIDOS_ENV", ("development", "production"))
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            read_database_url=env.get("PEDIDOS_READ_DATABASE_URL") or None,
            instance_name=_instance_name(env),
            workers=_number(env, "PEDIDOS_WORKERS", cls.workers, 1),
            queue_size=_number(env, "PEDIDOS_QUEUE_SIZE", cls.queue_size, 1),
            executor="process" if executor == "process" else "thread",
            environment="production" if environment == "production" else "development",
            max_retries=_number(env, "PEDIDOS_MAX_RETRIES", cls.max_retries, 0),
            request_timeout=_number(env, "PEDIDOS_REQUEST_TIMEOUT", cls.request_timeout, 0.001),
            idempotency_ttl_hours=_number(
                env, "PEDIDOS_IDEMPOTENCY_TTL_HOURS", cls.idempotency_ttl_hours, 0.001
            ),
            lease_seconds=_number(env, "PEDIDOS_LEASE_SECONDS", cls.lease_seconds, 0.1),
            recovery_interval=_number(env, "PEDIDOS_RECOVERY_INTERVAL", cls.recovery_interval, 0.0),
            max_attempts=_number(env, "PEDIDOS_MAX_ATTEMPTS", cls.max_attempts, 1),
            lock_wait_timeout=_number(env, "PEDIDOS_LOCK_WAIT_TIMEOUT", cls.lock_wait_timeout, 1),
            batch_size=_number(env, "PEDIDOS_BATCH_SIZE", cls.batch_size, 1),
            admin_token=env.get("PEDIDOS_ADMIN_TOKEN") or None,
            log_format=_log_format(_choice(env, "PEDIDOS_LOG_FORMAT", ("auto", "json", "text"))),
            random_orders=_switch(env, "PEDIDOS_RANDOM_ORDERS"),
            allowed_hosts=_hosts(env, "PEDIDOS_ALLOWED_HOSTS"),
            read_pool_size=_number(env, "PEDIDOS_READ_POOL_SIZE", cls.read_pool_size, 1),
            read_timeout=_number(env, "PEDIDOS_READ_TIMEOUT", cls.read_timeout, 0.01),
            csv_exports=_number(env, "PEDIDOS_CSV_EXPORTS", cls.csv_exports, 1),
            empty_body_async=_choice(env, "PEDIDOS_EMPTY_BODY_ASYNC", ("on", "off")) == "on",
        )


def _switch(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return None
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be on or off, got {raw!r}")


def _hosts(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    if raw.strip() == "":
        return DEFAULT_ALLOWED_HOSTS
    hosts = tuple(h.strip().lower().strip("[]") for h in raw.split(",") if h.strip())
    if not hosts:
        raise SettingsError(f"{name} must list at least one host, got {raw!r}")
    return hosts


def _log_format(value: str) -> LogFormat:
    return "json" if value == "json" else "text" if value == "text" else "auto"


def _instance_name(env: Mapping[str, str]) -> str:
    name = env.get("PEDIDOS_INSTANCE_NAME", "").strip()
    if not name:
        return socket.gethostname()
    if len(name) > MAX_INSTANCE_NAME or not name.isprintable():
        raise SettingsError(
            f"PEDIDOS_INSTANCE_NAME must be 1..{MAX_INSTANCE_NAME} printable characters"
        )
    return name
