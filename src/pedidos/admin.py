"""The guard on administrative operations: a bearer token from configuration."""

from __future__ import annotations

import hmac

from flask import request

from pedidos.config import Settings
from pedidos.problems import Problem


def require_admin(settings: Settings) -> None:
    """Pass with the configured token; without one, pass only outside production."""
    if settings.admin_token is None:
        if settings.production:
            raise Problem(
                403,
                "admin-desativado",
                "Administrative operations disabled",
                "Set PEDIDOS_ADMIN_TOKEN to enable them in production.",
            )
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
