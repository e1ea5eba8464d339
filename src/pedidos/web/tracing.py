"""The request id: taken from the caller's X-Request-Id (or made), and echoed back."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, request

from pedidos.tracing import request_id

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's id is echoed into logs, so it must be short and harmless: no spaces or quotes.
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


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
