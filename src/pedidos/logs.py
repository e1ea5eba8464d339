"""Structured logs: JSON lines off a terminal, each with the request id it belongs to."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from pedidos.config import LogFormat
from pedidos.tracing import request_id

_STANDARD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _request_id_of(record: logging.LogRecord) -> str | None:
    """The id the record was logged with, else the one of the context that logged it."""
    return getattr(record, "request_id", None) or request_id.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = _request_id_of(record)
        if current:
            entry["request_id"] = current
        for key, value in vars(record).items():
            if key not in _STANDARD_FIELDS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal, with the request id when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        current = _request_id_of(record)
        return f"{line} [{current}]" if current else line


def uses_json(log_format: LogFormat) -> bool:
    """JSON when asked, or on `auto` when stderr is not a terminal (a file, a collector)."""
    return log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())


# Our loggers and Werkzeug's at INFO; every other library's warnings and errors (SQLAlchemy's
# pool, for one) reach the root logger, which would otherwise print them as bare text.
_LEVELS = {"pedidos": logging.INFO, "werkzeug": logging.INFO, "": logging.WARNING}


def configure_logging(log_format: LogFormat) -> None:
    """Send every log record to stderr in one format, JSON or text (once per process)."""
    use_json = uses_json(log_format)
    for name, level in _LEVELS.items():
        logger = logging.getLogger(name)
        if any(getattr(h, "pedidos_handler", False) for h in logger.handlers):
            continue
        handler = logging.StreamHandler()
        handler.pedidos_handler = True  # type: ignore[attr-defined]
        handler.setFormatter(
            JsonFormatter() if use_json else TextFormatter("%(asctime)s %(levelname)s %(message)s")
        )
        logger.addHandler(handler)
        logger.setLevel(level)
        if name:
            logger.propagate = False
