"""The production server: granian (Rust HTTP, WSGI) with one worker process per core.

granian parses requests in Rust on an async runtime, so slow clients trickling headers hold a
socket, not one of the Python threads that run orders (gunicorn's gthread workers block a thread
on each of them), and it served the raw-SQL peer of the HTTP benchmark 1.5 to 2x faster than
gunicorn (docs/performance.md). Each worker process builds its own app from `pedidos.wsgi:app`:
engine, pool, order processor and recovery loop.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

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
# Set by the supervisor when workers run on cores of their own: a folder in which each worker
# claims one by locking the file named after it.
CORES_VARIABLE = "PEDIDOS_CORE_CLAIMS"

log = logging.getLogger(__name__)
# The lock file of this worker's core, open for the process's life: the kernel releases the
# claim when the process ends, however it ends, so that its replacement can take the core.
_held_claim: int | None = None


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
    if pin:
        (run_dir / "cores").mkdir()
        env[CORES_VARIABLE] = str(run_dir / "cores")
    else:
        env.pop(CORES_VARIABLE, None)
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


def claim_core() -> int | None:
    """In a worker of `serve --production` (or of gunicorn with `gunicorn.conf.py`): move this
    process, its threads and those it will start, onto a core no other worker of the server
    holds; return that core, or None when the server did not ask, every core is taken (more
    workers than cores) or the system cannot.

    A worker's Python threads take turns on one interpreter lock, so one core is all they can
    use at once. On a core of their own, a request thread that hands its order to the order
    worker, and the order worker that hands the outcome back, wake each other on the core they
    are on instead of across cores, which on a virtual machine is an interrupt between
    processors relayed by the hypervisor: a third fewer thread switches per order and a third
    less system time (docs/performance.md). Call it before the server starts its threads.
    """
    folder = os.environ.get(CORES_VARIABLE)
    if not folder or _held_claim is not None or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        core = _claim_free_core(Path(folder))
    except OSError as error:  # a speed-up only: the worker serves wherever it runs
        log.warning("worker %d claims no core: %s", os.getpid(), error)
        return None
    if core is not None:
        log.info("worker %d runs on core %d", os.getpid(), core, extra={"core": core})
    return core


def _claim_free_core(folder: Path) -> int | None:
    global _held_claim
    import fcntl

    for core in sorted(os.sched_getaffinity(0)):
        claim = os.open(folder / str(core), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(claim)  # another worker's core
            continue
        _held_claim = claim
        # Every thread the process has so far (log writer, recovery); new ones inherit it.
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
                os.sched_setaffinity(int(task), {core})
        return core
    return None


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
