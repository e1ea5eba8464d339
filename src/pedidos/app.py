"""Application factory: engine, sessions, processor, blueprints, CLI and error handlers."""

from __future__ import annotations

import atexit
from datetime import timedelta

from flask import Flask

from pedidos.api import api
from pedidos.config import Settings
from pedidos.db import make_engine, make_sessions
from pedidos.openapi import docs
from pedidos.problems import register_error_handlers
from pedidos.processor import PedidoProcessor
from pedidos.recovery import Recovery
from pedidos.running import Work
from pedidos.runtime import Runtime
from pedidos.safety import UnsafeSettings, settings_problems
from pedidos.service import place_pedido


def create_app(settings: Settings | None = None, *, work: Work = place_pedido) -> Flask:
    """Build the app; `work` is the order transaction (tests swap in broken ones)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    unsafe = settings_problems(settings, app.debug)
    if unsafe:
        raise UnsafeSettings("; ".join(unsafe))
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    engine = make_engine(
        settings.database_url,
        pool_size=settings.pool_size,
        lock_wait_timeout=settings.lock_wait_timeout,
    )
    sessions = make_sessions(engine)
    processor = PedidoProcessor(
        sessions,
        workers=settings.workers,
        queue_size=settings.queue_size,
        max_retries=settings.max_retries,
        work=work,
        executor=settings.executor,
        database_url=settings.database_url,
        batch_size=settings.batch_size,
    )
    runtime = Runtime(settings, engine, sessions, make_sessions(engine, read_only=True), processor)
    if settings.recovery_interval > 0:
        runtime.recovery = Recovery(
            sessions,
            processor,
            interval=settings.recovery_interval,
            lease=timedelta(seconds=settings.lease_seconds),
            max_attempts=settings.max_attempts,
        )
    app.extensions["pedidos"] = runtime
    atexit.register(runtime.close)
    # Counted so that a drain can wait for responses still on their way out.
    app.before_request(runtime.request_started)
    app.teardown_request(lambda _error: runtime.request_finished())

    app.register_blueprint(api)
    app.register_blueprint(docs)
    register_error_handlers(app)
    return app
