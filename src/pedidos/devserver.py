"""The threaded development server's own errors (414, 431, malformed request lines) as
problem+json, like every error the app itself produces."""

from __future__ import annotations

import json
from http import HTTPStatus

from werkzeug.serving import WSGIRequestHandler

from pedidos.guards import CONTENT_SECURITY_POLICY, SECURITY_HEADERS
from pedidos.logs import JsonAccessLog
from pedidos.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE


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
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)


class JsonProblemRequestHandler(JsonAccessLog, ProblemRequestHandler):
    """Both: access lines as JSON records, server errors as problem documents."""
