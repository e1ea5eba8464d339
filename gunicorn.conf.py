"""Production serving: `gunicorn -c gunicorn.conf.py 'pedidos.wsgi:app'`.

Threaded workers, one process per core: each process has its own engine, pool, order
processor and recovery loop; they share only the database.
"""

import multiprocessing
import os

bind = os.environ.get("PEDIDOS_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("PEDIDOS_GUNICORN_WORKERS", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = 16
# On SIGTERM a worker gets this long to finish the orders it accepted.
graceful_timeout = 30
# Clients reuse connections under load; a longer keep-alive avoids resets mid-reuse.
keepalive = 5
timeout = 60
