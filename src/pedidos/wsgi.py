"""WSGI entry point for production servers: `gunicorn 'pedidos.wsgi:app'`."""

from pedidos.app import create_app

app = create_app()
# Only serving processes run recovery; CLI commands that build the app do not.
if app.extensions["pedidos"].recovery is not None:
    app.extensions["pedidos"].recovery.start()
