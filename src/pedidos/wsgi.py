"""WSGI entry point for production servers: `gunicorn 'pedidos.wsgi:app'`."""

import gc

from pedidos.app import create_app
from pedidos.logs import configure_logging
from pedidos.web.cores import claim_core
from pedidos.web.production import watch_drain_flag

app = create_app()
configure_logging(app.extensions["pedidos"].settings.log_format)
# Only serving processes run recovery; CLI commands that build the app do not.
_runtime = app.extensions["pedidos"]
if _runtime.recovery is not None:
    _runtime.recovery.start()
# Under `pedidos serve --production`, the supervisor's signal to drain (elsewhere: nothing).
watch_drain_flag(lambda: _runtime.drain(timeout=_runtime.settings.request_timeout))
# A core of its own when the server asks, taken before the server starts its threads here.
claim_core(_runtime.settings.executor)
# What exists now lives as long as the process: kept out of the collector's way, so that a
# full collection under load walks only what requests allocate. With the app's objects in it,
# each one held the worker for about 50 ms (docs/performance.md).
gc.collect()
gc.freeze()
