"""The production server: granian (Rust HTTP, WSGI) with one worker process per core.

granian parses requests in Rust on an async runtime, so slow clients trickling headers hold a
socket, not one of the Python threads that run orders (gunicorn's gthread workers block a thread
on each of them). It also measured fastest (docs/performance.md). Each worker process builds its
own app from `pedidos.wsgi:app`: engine, pool, order processor and recovery loop.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping

# Threads per worker that run requests; orders wait for their batch on these.
BLOCKING_THREADS = 16
# Headers must arrive within this long, or the connection is dropped.
HEADER_READ_TIMEOUT_MS = 10_000
# On SIGTERM a worker gets this long to finish the orders it accepted.
GRACEFUL_SECONDS = 30


def production_environment(env: MutableMapping[str, str]) -> str:
    """Settings as with PEDIDOS_ENV=production, and a fresh folder for Prometheus samples.

    The one place `serve --production` changes the environment; the workers read their
    settings from it (Settings.from_env), like any other process.
    """
    env["PEDIDOS_ENV"] = "production"
    metrics_dir = env.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), "pedidos-metrics")
    )
    # Emptied at start, so samples of old pids do not count.
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)
    return metrics_dir


def default_workers() -> int:
    """One worker process per core this process may run on."""
    return len(os.sched_getaffinity(0)) or 1


def serve_production(host: str, port: int, workers: int) -> None:
    """Run granian in the foreground until SIGTERM or SIGINT, which drain each worker."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    production_environment(os.environ)
    server = Granian(
        "pedidos.wsgi:app",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,
        workers=workers,
        blocking_threads=BLOCKING_THREADS,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
        workers_kill_timeout=GRACEFUL_SECONDS,
        log_access=False,
    )
    server.serve()
