"""Who may call what in production: bearer tokens, their scopes and their clientes.

Development stays open. In production every route but the probes needs a token; a route
not listed below needs the admin scope, so a new route is closed until someone opens it.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time

from flask import Flask, g, request
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.routing import Rule

from pedidos.config import Settings
from pedidos.web.guards import PROBES
from pedidos.web.problems import Problem
from pedidos.web.tokens import ADMIN, Principal, verify_token
from pedidos.web.visibility import current_principal

READ = ("read",)
ENDPOINT_SCOPES: dict[str, tuple[str, ...]] = {
    "api.create_pedido": ("orders",),
    # Following an order one placed is part of ordering.
    "api.get_pedido": ("orders", "read"),
    "api.get_relatorio": READ,
    "api.get_status": READ,
    "api.list_clientes": READ,
    "api.list_produtos": READ,
    "dashboard.index": READ,
    "dashboard.static": READ,
    "dashboard.relatorio_fragment": READ,
    "dashboard.resumo_fragment": READ,
    "dashboard.clientes_fragment": READ,
    "dashboard.produtos_fragment": READ,
    "dashboard.relatorio_csv": READ,
}
# Verified tokens are remembered briefly so that a busy client does not cost a query per
# request; a revocation therefore takes effect within this many seconds.
CACHE_SECONDS = 5.0
CACHE_ENTRIES = 1024
AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="pedidos"'}


class TokenCache:
    """Recently verified tokens, keyed by a hash of the whole token (never the token)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Principal | None:
        with self._lock:
            found = self._entries.get(key)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def put(self, key: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) >= CACHE_ENTRIES:
                self._entries.clear()
            self._entries[key] = (principal, time.monotonic() + CACHE_SECONDS)


def unauthorized(detail: str) -> Problem:
    return Problem(401, "nao-autorizado", "Unauthorized", detail, headers=AUTHENTICATE)


def forbidden(detail: str) -> Problem:
    return Problem(403, "proibido", "Forbidden", detail)


def bearer() -> str | None:
    scheme, _, offered = request.environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    return offered.strip() if scheme.lower() == "bearer" and offered.strip() else None


def authenticate(
    settings: Settings, sessions: sessionmaker[Session], cache: TokenCache
) -> Principal:
    offered = bearer()
    if offered is None:
        raise unauthorized("Send 'Authorization: Bearer <token>'.")
    # compare_digest: the time taken does not reveal how much of the token matched.
    if settings.admin_token is not None and hmac.compare_digest(
        offered.encode(), settings.admin_token.encode()
    ):
        return ADMIN
    key = hashlib.sha256(offered.encode()).hexdigest()
    principal = cache.get(key)
    if principal is None:
        with sessions.begin() as session:
            principal = verify_token(session, offered)
        if principal is None:
            raise unauthorized("The token is unknown or revoked.")
        cache.put(key, principal)
    return principal


def authorize(principal: Principal, rule: Rule | None) -> None:
    if rule is None:
        return  # no such route: any valid token may learn that (404 or 405 follows)
    wanted = ENDPOINT_SCOPES.get(rule.endpoint, ("admin",))
    if not any(principal.allows(scope) for scope in wanted):
        raise forbidden(f"This token lacks the scope this route needs: {' or '.join(wanted)}.")


def register_access(app: Flask, settings: Settings, sessions: sessionmaker[Session]) -> None:
    """In production, authenticate and authorize every request before its view runs."""
    if not settings.production:
        return
    cache = TokenCache()

    @app.before_request
    def _authenticate() -> None:
        if request.path in PROBES:
            return
        principal = authenticate(settings, sessions, cache)
        g.principal = principal
        authorize(principal, request.url_rule)


def require_cliente(cliente_id: int) -> None:
    """A token bound to clientes orders only on their accounts."""
    principal = current_principal()
    bound = principal.clientes if principal is not None else None
    if bound is not None and cliente_id not in bound:
        raise forbidden(f"This token may not order for cliente {cliente_id}.")


def require_unbound() -> None:
    """A random order may land on any account: not for a token bound to clientes."""
    principal = current_principal()
    if principal is not None and principal.clientes is not None:
        raise forbidden("A token bound to clientes must name the cliente in the order.")


def require_admin(settings: Settings) -> None:
    """Production: the request's token must hold the admin scope (checked before the view,
    and again here). Development: the configured PEDIDOS_ADMIN_TOKEN when one is set."""
    if settings.production:
        principal = current_principal()
        if principal is None or not principal.allows("admin"):
            raise forbidden("This operation needs the admin scope.")
        return
    if settings.admin_token is None:
        return
    offered = bearer() or ""
    # compare_digest: the time taken does not reveal how much of the token matched.
    if not hmac.compare_digest(offered.encode(), settings.admin_token.encode()):
        raise unauthorized("This operation needs 'Authorization: Bearer <PEDIDOS_ADMIN_TOKEN>'.")
