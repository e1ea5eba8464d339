"""The request id that follows an order from its HTTP request to the worker that runs it."""

from __future__ import annotations

from contextvars import ContextVar

# Set by the web layer for each request; the processor reads it when an order is submitted,
# so that the order's outcome line carries the id of the request that placed it.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
