"""Start-up checks that refuse settings under which the service's guarantees do not hold."""

from __future__ import annotations

import os

from sqlalchemy import Engine, bindparam, text

from pedidos.config import Settings
from pedidos.storage.models import Base

TRUTHY = {"1", "true", "yes", "on"}


class UnsafeSettings(RuntimeError):
    """The service must not start like this; the message says why and what to change."""


def settings_problems(settings: Settings, debug: bool) -> list[str]:
    """Problems visible without a database connection."""
    found = []
    if settings.production and (debug or os.environ.get("FLASK_DEBUG", "").lower() in TRUTHY):
        found.append(
            "debug mode is on in production: the debugger lets any visitor run code. "
            "Unset FLASK_DEBUG (or PEDIDOS_ENV=production)."
        )
    return found


def database_problems(engine: Engine) -> list[str]:
    """MariaDB/MySQL modes that would break money and stock invariants."""
    if engine.dialect.name != "mysql":
        return []
    found = []
    with engine.connect() as connection:
        sql_mode = str(connection.execute(text("SELECT @@SESSION.sql_mode")).scalar() or "")
        if not {"STRICT_TRANS_TABLES", "STRICT_ALL_TABLES"} & set(sql_mode.split(",")):
            found.append(
                f"sql_mode is {sql_mode!r}: without STRICT_TRANS_TABLES the server silently "
                "truncates out-of-range money and stock values instead of failing."
            )
        tables = [table.name for table in Base.metadata.sorted_tables]
        engines = connection.execute(
            text(
                "SELECT table_name, engine FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name IN :names"
            ).bindparams(bindparam("names", expanding=True)),
            {"names": tables},
        ).all()
        for name, storage in engines:
            if str(storage).lower() != "innodb":
                found.append(
                    f"table {name} uses the {storage} engine: only InnoDB gives the "
                    "transactions and row locks every order relies on."
                )
    return found
