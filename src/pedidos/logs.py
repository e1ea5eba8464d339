"""Structured logs: JSON lines off a terminal, and a request id that follows each order."""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, request
from werkzeug.serving import WSGIRequestHandler

from pedidos.config import LogFormat
from pedidos.tracing import request_id

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's id is echoed into logs, so it must be short and harmless: no spaces or quotes.
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

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


access_log = logging.getLogger("pedidos.access")


class JsonAccessLog(WSGIRequestHandler):
    """Werkzeug's request handler with its access and error lines as plain structured records.

    Werkzeug writes access lines of its own, coloured with ANSI codes; through the `pedidos`
    logger they become JSON lines like every other, with the request id.
    """

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = getattr(self, "path", None)
        access_log.info(
            "%s %s %s",
            self.command,
            path,
            code,
            extra={
                "method": self.command,
                "path": path,
                "status": int(code) if str(code).isdigit() else str(code),
                "bytes": int(size) if str(size).isdigit() else None,
                "remote_addr": self.address_string(),
            },
        )

    def log(self, type: str, message: str, *args: object) -> None:
        level = logging.ERROR if type == "error" else logging.INFO
        access_log.log(level, message, *args, extra={"remote_addr": self.address_string()})


def register_request_ids(app: Flask) -> None:
    """Take the caller's X-Request-Id (or make one), log with it, and echo it back."""

    @app.before_request
    def _take_request_id() -> None:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id.set(offered if _ACCEPTABLE_ID.fullmatch(offered) else uuid.uuid4().hex)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        current = request_id.get()
        if current:
            response.headers[REQUEST_ID_HEADER] = current
        return response
