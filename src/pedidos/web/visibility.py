"""What the caller may learn about a cliente: its saldo, and the orders placed on it.

In production a 409 for insufficient saldo must not tell a stranger how much money a
cliente has (OWASP API3, excessive data exposure), nor may a token bound to some clientes
follow the orders of others (API1, broken object-level authorization).
"""

from __future__ import annotations

from typing import Any

from flask import g

from pedidos.web.tokens import Principal


def current_principal() -> Principal | None:
    """The request's principal; None in development, where the service is open."""
    found: Principal | None = g.get("principal")
    return found


def may_see_saldo(cliente_id: object) -> bool:
    """Tokens with the read scope list every saldo anyway; others see their own clientes'."""
    principal = current_principal()
    if principal is None or principal.allows("read"):
        return True
    return principal.clientes is not None and cliente_id in principal.clientes


def may_follow(cliente_id: object) -> bool:
    """A token bound to clientes follows only their orders; an unbound one orders for all."""
    principal = current_principal()
    if principal is None or principal.allows("read") or principal.clientes is None:
        return True
    return cliente_id in principal.clientes


def redact_rejection(facts: dict[str, Any]) -> dict[str, Any]:
    """A rejection's facts (reason, detail, extensions) as this caller may see them."""
    if "saldo" not in facts or may_see_saldo(facts.get("cliente_id")):
        return facts
    shown = {k: v for k, v in facts.items() if k != "saldo"}
    shown["detail"] = (
        f"cliente {facts.get('cliente_id')}'s saldo does not cover the order's total "
        f"{facts.get('total')}"
    )
    return shown
