"""Numbers, money and times written as in Brazil: R$ 1.234,56 · 1.234 · 29/11/2026 15:30."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

NBSP = "\u00a0"  # what browsers' Intl.NumberFormat('pt-BR') puts after "R$"


def inteiro(value: int) -> str:
    """1234567 → '1.234.567'."""
    return f"{value:,}".replace(",", ".")


def brl(value: Decimal) -> str:
    """Decimal('1234.5') → 'R$ 1.234,50' (a no-break space after R$, as in pt-BR)."""
    units, _, cents = f"{abs(value):.2f}".partition(".")
    sign = "-" if value < 0 else ""
    return f"{sign}R${NBSP}{inteiro(int(units))},{cents}"


def data_hora(moment: datetime) -> str:
    """A stored (naive UTC) or aware time → '29/11/2026 15:30:12 UTC'."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment
    return utc.strftime("%d/%m/%Y %H:%M:%S") + " UTC"


def utc_text(moment: datetime) -> str:
    """ISO 8601 ending in Z, as the JSON API writes times: '2026-11-29T15:30:12.123456Z'."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.isoformat().replace("+00:00", "Z")


# What the dashboard shows for the service's machine-readable keys.
MOTIVOS = {
    "saldo_insuficiente": "saldo insuficiente",
    "estoque_insuficiente": "estoque insuficiente",
    "cliente_nao_encontrado": "cliente não encontrado",
    "produto_nao_encontrado": "produto não encontrado",
    "sem_dados": "sem clientes ou produtos",
    "rejeitado": "rejeitado",
}
RESULTADOS = {
    "concluido": "concluídos",
    "rejeitado": "rejeitados",
    "sobrecarga": "recusados por sobrecarga",
    "desligando": "recusados (desligando)",
    "falhou": "falhas",
}


def motivo(key: str) -> str:
    """'saldo_insuficiente' → 'saldo insuficiente'; an unknown key keeps its words."""
    return MOTIVOS.get(key, key.replace("_", " "))
