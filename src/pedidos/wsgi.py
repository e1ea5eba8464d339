"""WSGI entry point for production servers: `gunicorn 'pedidos.wsgi:app'`."""

from pedidos.app import create_app

app = create_app()
# Only serving processes run recovery; CLI commands that build the app do not.
_recovery = app.extensions["pedidos"].recovery
if _recovery is not None:
    _recovery.start()
