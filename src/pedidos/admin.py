"""The guard on administrative operations (starting simulations)."""

from __future__ import annotations

import hmac

from flask import request

from pedidos.config import Settings
from pedidos.problems import Problem
from pedidos.visibility import current_principal


def require_admin(settings: Settings) -> None:
    """Production: the request's token must hold the admin scope (checked before the view,
    and again here). Development: the configured PEDIDOS_ADMIN_TOKEN when one is set."""
    if settings.production:
        principal = current_principal()
        if principal is None or not principal.allows("admin"):
            raise Problem(403, "proibido", "Forbidden", "This operation needs the admin scope.")
        return
    if settings.admin_token is None:
        return
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    # compare_digest: the time taken does not reveal how much of the token matched.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        offered.strip().encode(), settings.admin_token.encode()
    ):
        raise Problem(
            401,
            "nao-autorizado",
            "Unauthorized",
            "This operation needs 'Authorization: Bearer <PEDIDOS_ADMIN_TOKEN>'.",
            headers={"WWW-Authenticate": 'Bearer realm="pedidos"'},
        )
