"""The /metrics endpoint and the HTTP and pool instrumentation (see pedidos.metrics).

With several gunicorn workers, set PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py does): every
process then writes its samples to files there and `/metrics` sums them across workers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Blueprint
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import Engine, event

from pedidos.metrics import HTTP_REQUESTS, HTTP_SECONDS, POOL_CHECKED_OUT
from pedidos.web.responses import Response

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

metrics = Blueprint("metrics", __name__)
# Request methods counted by name; any other a client makes up is "other" (bounded labels).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@metrics.get("/metrics")
def expose() -> Response:
    """Every metric in Prometheus' text format (summed over workers in multiprocess mode)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        forget_dead_processes(Path(folder))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    # content_type, not mimetype: the constant already carries its charset, and mimetype
    # would append a second one.
    return Response(body, content_type=CONTENT_TYPE_LATEST)


# A live gauge's samples, one file per process: gauge_livesum_<pid>.db.
LIVE_GAUGE_FILE = re.compile(r"gauge_live\w*_(\d+)\.db")


def forget_dead_processes(folder: Path) -> None:
    """Drop the live gauges of worker processes that are gone (killed, crashed and replaced),
    so that an order in flight in a dead worker is not counted as in flight forever. Counters
    and histograms keep what the dead process counted."""
    for pid in {
        int(m.group(1)) for f in folder.iterdir() if (m := LIVE_GAUGE_FILE.fullmatch(f.name))
    }:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or the pid is someone else's now
        return False
    return True


class HttpMetrics:
    """Count and time requests by their route (never by raw path: bounded labels)."""

    def __init__(self) -> None:
        # The labelled children, found once: labels() locks and hashes on every call.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[str, Histogram] = {}

    def observe(self, environ: WSGIEnvironment, status: int, seconds: float) -> None:
        # Werkzeug leaves the request in the environ; its rule is the route it matched.
        rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
        endpoint = rule.rule if rule is not None else "unmatched"
        method = environ["REQUEST_METHOD"].upper()  # as routing reads it
        key = (method if method in METHODS else "other", endpoint, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = HTTP_REQUESTS.labels(key[0], endpoint, str(status))
        counter.inc()
        timer = self._timers.get(endpoint)
        if timer is None:
            timer = self._timers[endpoint] = HTTP_SECONDS.labels(endpoint)
        timer.observe(seconds)


def instrument_pool(engine: Engine) -> None:
    """Track connections checked out of the engine's pool."""

    def checked_out(*_args: Any) -> None:
        POOL_CHECKED_OUT.inc()

    def checked_in(*_args: Any) -> None:
        POOL_CHECKED_OUT.dec()

    event.listen(engine, "checkout", checked_out)
    event.listen(engine, "checkin", checked_in)
