"""Production serving: `gunicorn -c gunicorn.conf.py 'pedidos.wsgi:app'`.

Threaded workers, one process per core: each process has its own engine, pool, order
processor and recovery loop; they share only the database.

It imports nothing of pedidos: that would load prometheus_client in the master before
PROMETHEUS_MULTIPROC_DIR is set, and every worker forked from it would keep its metrics to
itself. What it shares with the app (the cores counted as `web.production.default_workers`
counts them, `web.cores.CLAIMS_VARIABLE`) is written out here; its hooks import in workers.
"""

import multiprocessing
import os
import shutil
import tempfile
from typing import Any

bind = os.environ.get("PEDIDOS_BIND", "127.0.0.1:5000")
# The cores this process may run on (a cpuset or taskset may allow fewer than the machine's).
cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
workers = int(os.environ.get("PEDIDOS_GUNICORN_WORKERS", cores or multiprocessing.cpu_count()))
worker_class = "gthread"
# Request threads mostly wait for their order's batch; the more orders wait at once, the
# larger the batches (64 measured 1.5x faster than 16, docs/performance.md).
threads = 64
# On SIGTERM a worker gets this long to finish the orders it accepted.
graceful_timeout = 30
# Clients reuse connections under load; a longer keep-alive avoids resets mid-reuse.
keepalive = 5
timeout = 60

# on: each worker on a core of its own (pedidos.web.cores); off: where the system puts them.
pin = os.environ.get("PEDIDOS_PIN", "on")
if pin not in ("on", "off"):
    raise SystemExit(f"PEDIDOS_PIN must be on or off, got {pin!r}")
CLAIMS_VARIABLE = "PEDIDOS_CORE_CLAIMS"

# Prometheus multiprocess mode: each worker writes its samples under this folder and
# /metrics sums them, whichever worker answers. Emptied at start, so old pids do not count.
metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), "pedidos-metrics")
)


def on_starting(server: Any) -> None:
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)
    if pin == "on":  # the folder of core claims, for the workers to inherit
        claims = tempfile.mkdtemp(prefix="pedidos-cores-")
        if os.getuid() == 0 and (server.cfg.uid, server.cfg.gid) != (0, 0):
            os.chown(claims, server.cfg.uid, server.cfg.gid)  # workers that drop root
        os.environ[CLAIMS_VARIABLE] = claims


def post_worker_init(_worker: object) -> None:
    # pedidos.wsgi claims a core as it loads in the worker; with preload_app it loaded in the
    # master, before there was anything to claim, so the worker claims it here.
    from pedidos.config import Settings
    from pedidos.web.cores import claim_core

    claim_core(Settings.from_env().executor)


def on_exit(_server: object) -> None:
    shutil.rmtree(os.environ.pop(CLAIMS_VARIABLE, ""), ignore_errors=True)


def child_exit(_server: object, worker: object) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
