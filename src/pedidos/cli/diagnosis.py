"""Database and configuration mistakes explained: what is wrong, and what to type about it."""

from __future__ import annotations

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from pedidos.config import SettingsError
from pedidos.storage.engine import describe_url, mysql_code
from pedidos.storage.safety import UnsafeSettings

EXAMPLE_URLS = (
    "e.g. DATABASE_URL='mysql+pymysql://root@127.0.0.1:3306/pedidos?charset=utf8mb4' "
    "or 'sqlite:///instance/pedidos.sqlite3'"
)
# Drivers SQLAlchemy imports for a URL, and the package that provides each.
DRIVER_PACKAGES = {
    "MySQLdb": "pip install 'pedidos[mysqlclient]' (it builds against libmariadb-dev), "
    "or use mysql+pymysql:// which is installed",
    "mariadb": "pip install mariadb (it needs MariaDB Connector/C), "
    "or use mysql+pymysql:// which is installed",
}
# MariaDB/MySQL client error codes worth a sentence of their own.
UNKNOWN_DATABASE = 1049
ACCESS_DENIED = 1045
NO_SUCH_TABLE = 1146
CANNOT_CONNECT = 2003
UNKNOWN_HOST = 2005
SERVER_GONE = 2006
LOST_CONNECTION = 2013


class SchemaNotCurrent(RuntimeError):
    """The database was never migrated, or is behind the migrations this code ships."""

    def __init__(self, database_url: str, current: str | None, newest: str) -> None:
        where = describe_url(database_url)
        state = "has no schema" if current is None else f"is at revision {current}"
        super().__init__(f"database {where} {state}; this version needs {newest}")


def explain(error: BaseException, database_url: str) -> list[str] | None:
    """One or two lines for a mistake we recognise; None for anything else."""
    if isinstance(error, SettingsError | UnsafeSettings):
        return [f"configuration: {error}"]
    if isinstance(error, SchemaNotCurrent):
        return [str(error), "create or upgrade it with: pedidos init-db"]
    if isinstance(error, ArgumentError):
        return [f"DATABASE_URL is not a database URL: {database_url!r}", EXAMPLE_URLS]
    if isinstance(error, NoSuchModuleError):
        return [f"DATABASE_URL names a database Pedidos does not support ({error})", EXAMPLE_URLS]
    if isinstance(error, ModuleNotFoundError):
        return _missing_driver(error, database_url)
    if isinstance(error, DBAPIError):
        return _database_error(error, database_url)
    return None


def _missing_driver(error: ModuleNotFoundError, database_url: str) -> list[str] | None:
    try:
        url = make_url(database_url)
    except ArgumentError:
        return None
    backend = url.get_backend_name()
    if backend not in ("mysql", "mariadb", "sqlite"):
        return [
            f"DATABASE_URL uses {backend}, which Pedidos does not support: its migrations and "
            "row locking are written for MariaDB/MySQL and SQLite",
            EXAMPLE_URLS,
        ]
    hint = DRIVER_PACKAGES.get(error.name or "")
    if hint is None:
        return None
    return [f"the driver for {url.drivername}:// ({error.name}) is not installed", hint]


def _database_error(error: DBAPIError, database_url: str) -> list[str]:
    url = make_url(database_url)
    where = describe_url(database_url)
    args: tuple[object, ...] = getattr(error.orig, "args", ())
    code = mysql_code(error)
    # MariaDB drivers put (code, text) in args; the text alone reads better.
    message = str(args[1]) if len(args) > 1 and code is not None else str(error.orig)
    if url.get_backend_name() == "sqlite":
        if "no such table" in message:
            return [
                f"database {where} has no schema ({message})",
                "create it with: pedidos init-db",
            ]
        if "unable to open database file" in message:
            return [f"cannot open the SQLite file of {where}", "check the path and permissions"]
        return [f"database {where}: {message}"]
    host = f"{url.host or 'localhost'}:{url.port or 3306}"
    if code == UNKNOWN_DATABASE:
        return [
            f"database {url.database!r} does not exist on {host}",
            f"create it: mysql -h {url.host or 'localhost'} -P {url.port or 3306} -u "
            f"{url.username or 'root'}{' -p' if url.password else ''} -e 'CREATE DATABASE "
            f"{url.database} CHARACTER SET utf8mb4', then run: pedidos init-db",
        ]
    if code == ACCESS_DENIED:
        return [
            f"{host} refused user {url.username!r}: wrong user or password in DATABASE_URL",
            f"check DATABASE_URL ({where}) or the grants of that user",
        ]
    if code in (CANNOT_CONNECT, UNKNOWN_HOST, SERVER_GONE, LOST_CONNECTION):
        return [
            f"no database server answers at {host} ({message})",
            "start MariaDB (e.g. systemctl start mariadb) or fix the host and port in DATABASE_URL",
        ]
    if code == NO_SUCH_TABLE:
        return [f"database {where} has no schema ({message})", "create it with: pedidos init-db"]
    return [f"database {where}: {message}"]
