"""Service settings, read once from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

ExecutorKind = Literal["thread", "process"]

DEFAULT_DATABASE_URL = "sqlite:///instance/pedidos.sqlite3"


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


@dataclass(frozen=True)
class Settings:
    """Everything the service can be tuned with; see the README's Configuration table."""

    database_url: str = DEFAULT_DATABASE_URL
    workers: int = 8
    queue_size: int = 256
    executor: ExecutorKind = "thread"
    max_retries: int = 5
    request_timeout: float = 30.0
    max_items: int = 100
    max_quantidade: int = 10_000
    max_body_bytes: int = 64 * 1024
    page_size: int = 50
    max_page_size: int = 200

    @property
    def pool_size(self) -> int:
        """Connections: one per worker plus a few for request threads (reports, status)."""
        return self.workers + 4

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from PEDIDOS_* variables and DATABASE_URL."""
        env = os.environ if env is None else env
        executor = env.get("PEDIDOS_EXECUTOR", "thread") or "thread"
        if executor not in ("thread", "process"):
            raise SettingsError(f"PEDIDOS_EXECUTOR must be 'thread' or 'process', got {executor!r}")
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            workers=_number(env, "PEDIDOS_WORKERS", cls.workers, 1),
            queue_size=_number(env, "PEDIDOS_QUEUE_SIZE", cls.queue_size, 1),
            executor="process" if executor == "process" else "thread",
            max_retries=_number(env, "PEDIDOS_MAX_RETRIES", cls.max_retries, 0),
            request_timeout=_number(env, "PEDIDOS_REQUEST_TIMEOUT", cls.request_timeout, 0.001),
        )
