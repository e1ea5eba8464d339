"""The WSGI layer around the Flask app: what every request and every response get."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from werkzeug.wsgi import ClosingIterator

from pedidos.web.guards import security_headers
from pedidos.web.metrics import HttpMetrics
from pedidos.web.tracing import REQUEST_ID_HEADER, take_request_id

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class InFlight(Protocol):
    """What counts the requests a drain waits for."""

    def request_started(self) -> None: ...

    def request_finished(self) -> None: ...


class Envelope:
    """WSGI middleware: each request gets its id (the caller's X-Request-Id, or a new one),
    is counted in flight until its body is sent, and is counted and timed by route; each
    response carries the request id and every security header the app did not set itself.
    Error pages included: everything the app answers passes here.

    Here rather than as Flask hooks: Flask looks up and calls each hook on every request, and
    each read of `request` there is a context lookup; here the environ is read once, and the
    headers, all constants but the id, are appended as they are.
    """

    def __init__(self, app: WSGIApplication, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight
        self.metrics = HttpMetrics()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        current = take_request_id(environ)
        added = security_headers(environ.get("PATH_INFO", ""))

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Callable[[bytes], object]:
            self.metrics.observe(environ, int(status[:3]), time.perf_counter() - started)
            present = {name.lower() for name, _value in headers}
            missing = [pair for pair in added if pair[0].lower() not in present]
            return start_response(
                status, [*headers, *missing, (REQUEST_ID_HEADER, current)], exc_info
            )

        self.in_flight.request_started()
        try:
            body = self.app(environ, start)
        except BaseException:
            self.in_flight.request_finished()
            raise
        if isinstance(body, list):  # already whole: nothing left to send from the app
            self.in_flight.request_finished()
            return body
        return ClosingIterator(body, self.in_flight.request_finished)
