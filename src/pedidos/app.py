"""Application factory: engine, sessions, processor, blueprints, CLI and error handlers."""

from __future__ import annotations

import atexit
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask

from pedidos.config import Settings
from pedidos.orders.processor import PedidoProcessor
from pedidos.orders.recovery import Recovery
from pedidos.orders.transaction import Work, place_pedidos
from pedidos.runtime import Runtime
from pedidos.sim.simulacoes import Simulations
from pedidos.storage.engine import make_engine, make_sessions
from pedidos.storage.reads import Reads
from pedidos.storage.safety import UnsafeSettings, settings_problems
from pedidos.web.access import register_access
from pedidos.web.api import api
from pedidos.web.dashboard import dashboard
from pedidos.web.envelope import Envelope
from pedidos.web.guards import register_guards
from pedidos.web.metrics import instrument_pool, metrics
from pedidos.web.openapi import docs
from pedidos.web.problems import register_error_handlers
from pedidos.web.responses import Response
from pedidos.web.simulacoes import simulacao_out, simulacoes_api


class PedidosFlask(Flask):
    """Flask, minus a cost paid on every request: its hooks and views are plain functions,
    and Flask would inspect each one for a coroutine each time it runs it."""

    response_class = Response

    def __init__(self, import_name: str, **options: Any) -> None:
        super().__init__(import_name, **options)
        self._checked: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        found = self._checked.get(func)
        if found is None:
            found = self._checked[func] = super().ensure_sync(func)
        return found


def create_app(settings: Settings | None = None, *, work: Work = place_pedidos) -> Flask:
    """Build the app; `work` is the order transaction (tests swap in broken ones)."""
    settings = settings or Settings.from_env()
    app = PedidosFlask(__name__, template_folder="web/templates", static_folder="web/static")
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
    read_sessions = make_sessions(engine, read_only=True)
    runtime = Runtime(
        settings,
        engine,
        sessions,
        read_sessions,
        processor,
        Simulations(
            sessions,
            read_sessions,
            processor,
            render=lambda simulation: simulacao_out(simulation).model_dump_json(),
        ),
        Reads(
            settings.read_database_url or settings.database_url,
            settings.read_pool_size,
            settings.read_timeout,
            settings.csv_exports,
        ),
    )
    if settings.recovery_interval > 0:
        runtime.recovery = Recovery(
            sessions,
            processor,
            interval=settings.recovery_interval,
            lease=timedelta(seconds=settings.lease_seconds),
            max_attempts=settings.max_attempts,
        )
        # Every process that serves requests runs recovery, however it was started
        # (`pedidos serve`, granian, `gunicorn 'pedidos:create_app()'`); commands that only
        # build the app (init-db, seed) do not.
        app.before_request(runtime.recovery.start)
    app.extensions["pedidos"] = runtime
    atexit.register(runtime.close)
    # Request ids, metrics and security headers; requests counted so that a drain can wait
    # for responses still on their way out.
    app.wsgi_app = Envelope(app.wsgi_app, runtime)  # type: ignore[method-assign]

    register_guards(app, settings.allowed_hosts)
    register_access(app, settings, read_sessions)
    instrument_pool(engine)
    app.register_blueprint(api)
    app.register_blueprint(simulacoes_api)
    app.register_blueprint(dashboard)
    app.register_blueprint(metrics)
    app.register_blueprint(docs)
    register_error_handlers(app)
    return app
