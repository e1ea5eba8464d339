"""Production serving: `gunicorn -c gunicorn.conf.py 'pedidos.wsgi:app'`.

Threaded workers, one process per core: each process has its own engine, pool, order
processor and recovery loop; they share only the database.
"""

import multiprocessing
import os
import shutil
import tempfile

from pedidos.web.production import CORES_VARIABLE

bind = os.environ.get("PEDIDOS_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("PEDIDOS_GUNICORN_WORKERS", multiprocessing.cpu_count()))
worker_class = "gthread"
# Request threads mostly wait for their order's batch; the more orders wait at once, the
# larger the batches (64 measured 1.5x faster than 16, docs/performance.md).
threads = 64
# On SIGTERM a worker gets this long to finish the orders it accepted.
graceful_timeout = 30
# Clients reuse connections under load; a longer keep-alive avoids resets mid-reuse.
keepalive = 5
timeout = 60

# off: workers run wherever the system puts them.
pin = os.environ.get("PEDIDOS_PIN", "on")
if pin not in ("on", "off"):
    raise SystemExit(f"PEDIDOS_PIN must be on or off, got {pin!r}")

# Prometheus multiprocess mode: each worker writes its samples under this folder and
# /metrics sums them, whichever worker answers. Emptied at start, so old pids do not count.
metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), "pedidos-metrics")
)


def on_starting(_server: object) -> None:
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)
    # Each worker on a core of its own, as under `pedidos serve --production`: pedidos.wsgi
    # claims one in this folder (docs/deploy-notes.md).
    if pin == "on":
        os.environ[CORES_VARIABLE] = tempfile.mkdtemp(prefix="pedidos-cores-")


def on_exit(_server: object) -> None:
    shutil.rmtree(os.environ.pop(CORES_VARIABLE, ""), ignore_errors=True)


def child_exit(_server: object, worker: object) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
