"""The WSGI layer every request passes: its id, its count for the drain, its headers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.wsgi import ClosingIterator

from pedidos.tracing import request_id
from pedidos.web.envelope import Envelope
from tests.helpers import Counted

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def environ(**extra: str) -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/relatorio.csv", **extra}


def ignore(_status: str, _headers: list[tuple[str, str]], _exc: object = None) -> Any:
    return None


def test_a_streamed_body_is_counted_until_it_is_closed() -> None:
    closed: list[bool] = []

    class Stream:
        def __iter__(self) -> Iterator[bytes]:
            yield b"a,"
            yield b"b"

        def close(self) -> None:
            closed.append(True)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/csv")])
        return Stream()

    counted = Counted()
    body = Envelope(app, counted)(environ(), ignore)
    assert counted.requests == 1  # the drain waits for this body
    assert b"".join(body) == b"a,b"
    assert counted.requests == 1
    assert isinstance(body, ClosingIterator)
    body.close()
    assert counted.requests == 0 and closed == [True]


def test_a_body_in_memory_is_released_at_once_and_passed_on_as_it_is() -> None:
    sent: list[tuple[str, str]] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("201 Created", [("Content-Type", "application/json")])
        return [b"{}"]

    counted = Counted()

    def keep(_status: str, headers: list[tuple[str, str]], _exc: object = None) -> Any:
        sent.extend(headers)

    body = Envelope(app, counted)(environ(HTTP_X_REQUEST_ID="abc-1"), keep)
    assert body == [b"{}"] and isinstance(body, list)  # the server's one-write path
    assert counted.requests == 0
    assert ("X-Request-Id", "abc-1") in sent and request_id.get() == "abc-1"


def test_a_request_that_raises_is_not_left_counted() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("broken")

    counted = Counted()
    with pytest.raises(RuntimeError):
        Envelope(app, counted)(environ(), ignore)
    assert counted.requests == 0
