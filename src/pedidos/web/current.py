"""The runtime of the app that is handling this request or command."""

from __future__ import annotations

from flask import current_app

from pedidos.runtime import Runtime


def current_runtime() -> Runtime:
    """The runtime that create_app built for the app handling this request or command."""
    found: Runtime = current_app.extensions["pedidos"]
    return found
