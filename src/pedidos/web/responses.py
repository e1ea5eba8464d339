"""The app's response class: a body already in memory leaves as one bytes object."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import flask

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment


class Response(flask.Response):
    """A Flask response whose in-memory body goes to the server as a one-item list.

    Werkzeug wraps every body in an iterator, which a server must pull chunk by chunk: granian
    does so from Rust and lets go of the interpreter lock for each chunk, then waits to take it
    back behind every other thread of the process, once more per request. A list is the WSGI
    form a server may send at once. Streamed bodies (generators, files) pass as they are.
    """

    def get_app_iter(self, environ: WSGIEnvironment) -> Iterable[bytes]:
        app_iter = super().get_app_iter(environ)
        if not self.is_sequence:
            return app_iter
        try:
            return [b"".join(app_iter)]
        finally:
            close = getattr(app_iter, "close", None)
            if close is not None:
                close()  # what was registered to run when the response ends runs now
