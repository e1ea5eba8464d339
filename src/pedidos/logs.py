"""Structured logs: JSON lines off a terminal, each with the request id it belongs to."""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
from datetime import UTC, datetime
from typing import cast

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


# Records waiting for the writer thread; when it falls this far behind, loggers wait for it.
QUEUED_RECORDS = 10_000


class _Handoff(logging.handlers.QueueHandler):
    """Hands each record to the writer thread, so that no order's worker waits on stderr.

    The request id is read here, in the context that logged; the record is otherwise passed
    as it is (the same process formats it, exceptions included).
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        current = _request_id_of(record)
        if current:
            record.request_id = current
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        cast("queue.Queue[logging.LogRecord]", self.queue).put(record)  # full: wait, bounded


def configure_logging(log_format: LogFormat) -> None:
    """Send every log record to stderr in one format, JSON or text (once per process).

    One writer thread formats and writes; loggers only queue their records.
    """
    loggers = {logging.getLogger(name): level for name, level in _LEVELS.items()}
    if all(any(isinstance(h, _Handoff) for h in logger.handlers) for logger in loggers):
        return
    use_json = uses_json(log_format)
    writer = logging.StreamHandler()
    writer.setFormatter(
        JsonFormatter() if use_json else TextFormatter("%(asctime)s %(levelname)s %(message)s")
    )
    records: queue.Queue[logging.LogRecord] = queue.Queue(QUEUED_RECORDS)
    listener = logging.handlers.QueueListener(records, writer)
    listener.start()
    atexit.register(listener.stop)  # writes what is still queued
    for logger, level in loggers.items():
        logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, _Handoff)]
        logger.addHandler(_Handoff(records))
        logger.setLevel(level)
        if logger.name != "root":
            logger.propagate = False
