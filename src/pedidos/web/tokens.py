"""API tokens: create (the secret is shown once), verify, list and revoke.

A token reads `pdk_<id>_<secret>`: the id finds the row, the secret (256 random bits) is
checked against its stored SHA-256 in constant time. A leaked database yields no usable
token, and a guessed id alone yields nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from pedidos.storage.models import Token, utc_now

# orders: place orders and follow them; read: report, summary, catalogue, status, dashboard;
# admin: everything, simulations, metrics and the API docs included.
SCOPES = ("orders", "read", "admin")
TOKEN_FORMAT = re.compile(r"pdk_([0-9]{1,9})_([A-Za-z0-9_-]{43})")
MAX_BOUND_CLIENTES = 1000


class InvalidToken(ValueError):
    """A token cannot be created as asked (unknown scope, bad cliente list)."""


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: its scopes, and the clientes it is bound to (None: any)."""

    nome: str
    scopes: frozenset[str]
    clientes: frozenset[int] | None = None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


ADMIN = Principal("PEDIDOS_ADMIN_TOKEN", frozenset(SCOPES))


@dataclass(frozen=True)
class TokenInfo:
    id: int
    nome: str
    scopes: tuple[str, ...]
    clientes: tuple[int, ...] | None
    criado_em: datetime
    revogado_em: datetime | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _clientes_text(clientes: tuple[int, ...] | None) -> str | None:
    if clientes is None:
        return None
    if not clientes or len(clientes) > MAX_BOUND_CLIENTES or min(clientes) < 1:
        raise InvalidToken(f"bind a token to 1 to {MAX_BOUND_CLIENTES} positive cliente ids")
    return ",".join(str(c) for c in sorted(set(clientes)))


def _clientes_of(stored: str | None) -> tuple[int, ...] | None:
    return None if stored is None else tuple(int(c) for c in stored.split(",") if c)


def create_token(
    session: Session, nome: str, scopes: tuple[str, ...], clientes: tuple[int, ...] | None
) -> tuple[int, str]:
    """Store a new token's hash; return its id and the token, which is never shown again."""
    unknown = set(scopes) - set(SCOPES)
    if not scopes or unknown:
        raise InvalidToken(f"scopes must be among {', '.join(SCOPES)}")
    if not 1 <= len(nome.strip()) <= 120:
        raise InvalidToken("the name must be 1 to 120 characters")
    secret = secrets.token_urlsafe(32)
    row = Token(
        nome=nome.strip(),
        hash=_digest(secret),
        escopos=" ".join(s for s in SCOPES if s in scopes),
        clientes=_clientes_text(clientes),
    )
    session.add(row)
    session.flush()
    return row.id, f"pdk_{row.id}_{secret}"


def verify_token(session: Session, presented: str) -> Principal | None:
    """The principal of a valid, unrevoked token; None for anything else."""
    match = TOKEN_FORMAT.fullmatch(presented)
    if match is None:
        return None
    row = session.execute(
        select(Token).where(Token.id == int(match.group(1)), Token.revogado_em.is_(None))
    ).scalar_one_or_none()
    # compare_digest: the time taken does not tell how much of the hash matched.
    if row is None or not hmac.compare_digest(row.hash, _digest(match.group(2))):
        return None
    clientes = _clientes_of(row.clientes)
    return Principal(
        row.nome, frozenset(row.escopos.split()), None if clientes is None else frozenset(clientes)
    )


def list_tokens(session: Session) -> list[TokenInfo]:
    rows = session.execute(select(Token).order_by(Token.id)).scalars()
    return [
        TokenInfo(
            r.id,
            r.nome,
            tuple(r.escopos.split()),
            _clientes_of(r.clientes),
            r.criado_em,
            r.revogado_em,
        )
        for r in rows
    ]


def revoke_token(session: Session, token_id: int) -> bool:
    """Revoke a token for good; False when there is no such unrevoked token."""
    revoked: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(Token)
        .where(Token.id == token_id, Token.revogado_em.is_(None))
        .values(revogado_em=utc_now())
    )
    return bool(revoked.rowcount)
