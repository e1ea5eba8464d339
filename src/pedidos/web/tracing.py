"""The request id: taken from the caller's X-Request-Id (or made), and echoed back
(pedidos.web.envelope)."""

from __future__ import annotations

import itertools
import os
import re
from typing import TYPE_CHECKING

from pedidos.tracing import request_id

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_ENVIRON = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
# A caller's id is echoed into logs, so it must be short and harmless: no spaces or quotes.
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class _IdMaker:
    """Ids this process makes: 32 hex digits, a random prefix per process and a counter.

    They need to be unique, not secret: unlike uuid4, no read of the kernel's random source
    per request. A forked child draws a prefix of its own.
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):012x}"


new_request_id = _IdMaker()


def take_request_id(environ: WSGIEnvironment) -> str:
    """The caller's X-Request-Id when it is safe to echo, else a new one; logs carry it."""
    offered = environ.get(_REQUEST_ID_ENVIRON, "")
    current = offered if _ACCEPTABLE_ID.fullmatch(offered) else new_request_id()
    request_id.set(current)
    return current
