"""Structured logs: JSON lines off a terminal, each with the request id it belongs to."""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import TextIO

from pedidos.config import LogFormat
from pedidos.tracing import request_id

_STANDARD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# One encoder for every line: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


def _request_id_of(record: logging.LogRecord) -> str | None:
    """The id the record was logged with, else the one of the context that logged it."""
    return getattr(record, "request_id", None) or request_id.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and extras."""

    def __init__(self) -> None:
        super().__init__()
        # The last time written: the lines of one batch of orders share their moment.
        self._last_time: tuple[float, str] = (0.0, "")

    def _time(self, created: float) -> str:
        last, text = self._last_time
        if created != last:
            text = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
            self._last_time = (created, text)
        return text

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self._time(record.created),
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
        return _ENCODER.encode(entry)


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
# The writer wakes this often and writes everything logged since, in one write: a logger
# never wakes it, so no record costs a thread switch on the order path.
WRITE_INTERVAL_SECONDS = 0.05


class _Writer:
    """One thread per process that formats and writes the records loggers leave for it."""

    def __init__(self, handler: logging.StreamHandler[TextIO]) -> None:
        self._handler = handler
        self._pending: deque[logging.LogRecord] = deque()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pedidos-log-writer", daemon=True)
        self._thread.start()

    def put(self, record: logging.LogRecord) -> None:
        # deque.append is atomic: no lock, no wake-up. Bounded: wait while the writer catches up.
        while len(self._pending) >= QUEUED_RECORDS and self._thread.is_alive():
            time.sleep(WRITE_INTERVAL_SECONDS / 10)
        self._pending.append(record)

    def _run(self) -> None:
        while not self._stopped.wait(WRITE_INTERVAL_SECONDS):
            self.write_pending()
        self.write_pending()

    def write_pending(self) -> None:
        lines: list[str] = []
        while self._pending:
            record = self._pending.popleft()
            try:
                lines.append(self._handler.format(record))
            except Exception:
                self._handler.handleError(record)
        if lines:
            stream = self._handler.stream
            stream.write("\n".join(lines) + "\n")
            stream.flush()

    def stop(self) -> None:
        """Write what is still pending (at exit)."""
        self._stopped.set()
        self._thread.join()


class _Handoff(logging.Handler):
    """Leaves each record for the writer thread, so that no order's worker waits on stderr.

    The request id is read here, in the context that logged; the record is otherwise passed
    as it is (the same process formats it, exceptions included).
    """

    def __init__(self, writer: _Writer) -> None:
        super().__init__()
        self.writer = writer

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: the writer's deque is safe to append to from any thread.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        current = _request_id_of(record)
        if current:
            record.request_id = current
        self.writer.put(record)


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
    thread = _Writer(writer)
    atexit.register(thread.stop)  # writes what is still pending
    for logger, level in loggers.items():
        logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, _Handoff)]
        logger.addHandler(_Handoff(thread))
        logger.setLevel(level)
        if logger.name != "root":
            logger.propagate = False
