"""WSGI entry point for production servers: `gunicorn 'pedidos.wsgi:app'`."""

from pedidos.app import create_app
from pedidos.logs import configure_logging

app = create_app()
configure_logging(app.extensions["pedidos"].settings.log_format)
# Only serving processes run recovery; CLI commands that build the app do not.
_recovery = app.extensions["pedidos"].recovery
if _recovery is not None:
    _recovery.start()
