"""The production server: granian (Rust HTTP, WSGI) with one worker process per core.

granian parses requests in Rust on an async runtime, so slow clients trickling headers hold a
socket, not one of the Python threads that run orders (gunicorn's gthread workers block a thread
on each of them), and it served the raw-SQL peer of the HTTP benchmark 1.5 to 2x faster than
gunicorn (docs/performance.md). Each worker process builds its own app from `pedidos.wsgi:app`:
engine, pool, order processor and recovery loop.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from pedidos.web.cores import CLAIMS_VARIABLE

# Threads per worker that run requests; orders wait for their batch on these. Enough for
# every connection of a busy client pool: the more orders wait at once, the larger the
# batches (64 measured 40-50 % faster than 16, docs/performance.md).
BLOCKING_THREADS = 64
# Headers must arrive within this long, or the connection is dropped.
HEADER_READ_TIMEOUT_MS = 10_000
# On SIGTERM a worker gets this long to finish the orders it accepted.
GRACEFUL_SECONDS = 30
# Between SIGTERM and closing the listener, /readyz answers 503 (and new orders 503) for this
# long, so that a load balancer takes the instance out before connections are refused.
DRAIN_NOTICE_SECONDS = 2.0
# Set by the supervisor for its workers: a file that appears when the server starts draining.
DRAIN_FLAG_VARIABLE = "PEDIDOS_DRAIN_FLAG"


def production_environment(env: MutableMapping[str, str], pin: bool = True) -> Path:
    """Settings as with PEDIDOS_ENV=production, a fresh folder for Prometheus samples, the
    drain flag's place and, with `pin`, the folder of core claims; return this server's own
    folder (removed when it stops).

    The one place `serve --production` changes the environment; the workers read their
    settings from it (Settings.from_env), like any other process.
    """
    env["PEDIDOS_ENV"] = "production"
    run_dir = Path(tempfile.mkdtemp(prefix="pedidos-serve-"))
    # Its own folder unless told otherwise, so two servers on one machine never share one.
    metrics_dir = env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(run_dir / "metrics"))
    # Emptied at start, so samples of old pids do not count.
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)
    env[DRAIN_FLAG_VARIABLE] = str(run_dir / "draining")
    if pin:  # each worker on a core of its own (pedidos.web.cores)
        (run_dir / "cores").mkdir()
        env[CLAIMS_VARIABLE] = str(run_dir / "cores")
    else:
        env.pop(CLAIMS_VARIABLE, None)
    return run_dir


def watch_drain_flag(drain: Callable[[], None], interval: float = 0.1) -> None:
    """In a worker of `serve --production`: call `drain` once the supervisor raises the flag.

    granian handles SIGTERM in each worker itself (stop accepting, finish open requests); the
    flag comes first, so this process drains as the development server does: /readyz and
    new orders answer 503, accepted orders finish.
    """
    flag = os.environ.get(DRAIN_FLAG_VARIABLE)
    if not flag:
        return
    path = Path(flag)

    def watch() -> None:
        while not path.exists():
            threading.Event().wait(interval)
        drain()

    threading.Thread(target=watch, name="pedidos-drain-watch", daemon=True).start()


def default_workers() -> int:
    """One worker process per core this process may run on."""
    return len(os.sched_getaffinity(0)) or 1


def serve_production(host: str, port: int, workers: int, pin: bool = True) -> None:
    """Run granian in the foreground until SIGTERM or SIGINT, which drain each worker. With
    `pin`, each worker runs on a core of its own while there are cores to go round."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.server import MPServer  # worker processes: this CPython has a GIL

    run_dir = production_environment(os.environ, pin)
    flag = Path(os.environ[DRAIN_FLAG_VARIABLE])
    # Fresh interpreters: each worker imports the app under the environment set above (metrics
    # in multiprocess mode), and inherits no threads or connections from this process.
    multiprocessing.set_start_method("spawn", force=True)

    class DrainingGranian(MPServer):
        """On the first SIGTERM or SIGINT: raise the flag, give notice, then stop workers."""

        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            stop: Callable[..., None] = super().signal_handler_interrupt
            if flag.exists():
                stop(*args, **kwargs)  # a second signal: stop now
                return
            flag.touch()
            threading.Timer(DRAIN_NOTICE_SECONDS, stop, args, kwargs).start()

    server = DrainingGranian(
        "pedidos.wsgi:app",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,
        workers=workers,
        blocking_threads=BLOCKING_THREADS,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
        workers_kill_timeout=GRACEFUL_SECONDS,
        # A worker that dies (a crash, the OOM killer) is replaced while the others serve on;
        # one that dies again within seconds of starting makes the server exit (granian's
        # crash-loop guard), so a broken deployment still fails loudly.
        respawn_failed_workers=True,
        log_access=False,
    )
    try:
        server.serve()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
