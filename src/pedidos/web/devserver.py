"""The threaded development server's own errors (414, 431, malformed request lines) as
problem+json, like every error the app itself produces."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from werkzeug.serving import WSGIRequestHandler

from pedidos.web.guards import SECURITY_HEADERS
from pedidos.web.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE


class ProblemRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler, answering errors it raises before the app runs as
    RFC 9457 documents instead of HTML pages."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        try:
            title = HTTPStatus(code).phrase
        except ValueError:
            title = "Error"
        body = json.dumps(
            {
                "type": PROBLEM_TYPE_BASE + title.lower().replace(" ", "-"),
                "title": title,
                "status": code,
                # The server's message may echo request bytes: keep it short and printable.
                "detail": "".join(c for c in (message or title) if c.isprintable())[:200],
            }
        ).encode()
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, title)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", PROBLEM_MEDIA_TYPE)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)


access_log = logging.getLogger("pedidos.http")


class JsonAccessLog(WSGIRequestHandler):
    """Werkzeug's request handler with its access and error lines as plain structured records.

    Werkzeug writes access lines of its own, coloured with ANSI codes; through the `pedidos`
    logger they become JSON lines like every other, with the request id.
    """

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # http.server logs a response as it starts it, before its size is known: no size here.
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
                "remote_addr": self.address_string(),
            },
        )

    def log(self, type: str, message: str, *args: object) -> None:
        level = logging.ERROR if type == "error" else logging.INFO
        access_log.log(level, message, *args, extra={"remote_addr": self.address_string()})


class JsonProblemRequestHandler(JsonAccessLog, ProblemRequestHandler):
    """Both: access lines as JSON records, server errors as problem documents."""
