"""Request and response schemas: they validate the API's edges and generate its OpenAPI."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from pedidos.orders.processor import ProcessorStats
from pedidos.orders.transaction import ItemRequest, PedidoRequest, PedidoResult

MAX_ITENS = 100
MAX_QUANTIDADE = 10_000
MAX_ID = 2**63 - 1

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
# Money leaves as a decimal string ("12.30"), never as a float.
MoneyStr = Annotated[
    Decimal,
    PlainSerializer(lambda v: f"{v:.2f}", return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "format": "decimal", "example": "12.30"}),
]


def as_utc(moment: datetime) -> datetime:
    """Database timestamps are naive UTC; give them their zone for serialization."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# Timestamps leave as ISO 8601 with their zone ("...Z"), never as naive local-looking times.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class StrictInput(BaseModel):
    """Input models: no coercion (true is not 1, 2.0 is not 2) and no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ItemIn(StrictInput):
    produto_id: Id
    quantidade: Annotated[int, Field(ge=1, le=MAX_QUANTIDADE)]


class PedidoIn(StrictInput):
    """An order: a cliente and 1..100 items. Prices always come from the database."""

    cliente_id: Id
    itens: Annotated[list[ItemIn], Field(min_length=1, max_length=MAX_ITENS)]

    def to_request(self) -> PedidoRequest:
        return PedidoRequest(
            self.cliente_id,
            tuple(ItemRequest(i.produto_id, i.quantidade) for i in self.itens),
        )


class QueryInput(BaseModel):
    """Query strings arrive as text, so numbers are parsed; unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PageQuery(QueryInput):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    after: Annotated[int, Field(ge=0, le=MAX_ID)] = 0


def _iso_8601_utc(value: object) -> object:
    """ISO 8601 text to naive UTC, as timestamps are stored; a time without zone is UTC.

    Lax parsing would take "0.5" as a Unix time, so only text is accepted.
    """
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.fromisoformat(value)
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    except (ValueError, OverflowError):  # OverflowError: year 1 with a positive offset
        raise ValueError("expected an ISO 8601 date-time, e.g. 2026-11-29T12:00:00Z") from None


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_8601_utc), Field(strict=True)]


class RelatorioQuery(QueryInput):
    cliente_id: Id | None = None
    produto_id: Id | None = None
    desde: IsoDatetime | None = Field(None, description="Orders created at or after (ISO 8601)")
    ate: IsoDatetime | None = Field(None, description="Orders created before (ISO 8601)")
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="Opaque cursor from the previous page's next_cursor"
    )
    resumo: bool = Field(
        False,
        description="Include the summary on the first page. Unfiltered, it reads the totals "
        "kept with every order (milliseconds); filtered, it aggregates the matching orders.",
    )
    top: Annotated[int, Field(ge=1, le=100)] = 10


class VazaoQuery(QueryInput):
    segundos: Annotated[int, Field(ge=1, le=600)] = 120


class ItemOut(BaseModel):
    produto_id: int
    quantidade: int
    preco_unitario: MoneyStr
    subtotal: MoneyStr


class PedidoOut(BaseModel):
    id: int
    cliente_id: int
    total: MoneyStr
    criado_em: UtcDatetime
    itens: list[ItemOut]

    @classmethod
    def of(cls, pedido: PedidoResult) -> PedidoOut:
        return cls(
            id=pedido.id,
            cliente_id=pedido.cliente_id,
            total=pedido.total,
            criado_em=pedido.criado_em,
            itens=[
                ItemOut(
                    produto_id=i.produto_id,
                    quantidade=i.quantidade,
                    preco_unitario=i.preco_unitario,
                    subtotal=i.subtotal,
                )
                for i in pedido.itens
            ],
        )


class ItemNomeado(ItemOut):
    produto_nome: str


class PedidoNomeado(PedidoOut):
    """A report row: the order with the names of its cliente and produtos."""

    cliente_nome: str
    itens: list[ItemNomeado]  # type: ignore[assignment]


class ProdutoResumo(BaseModel):
    produto_id: int
    nome: str
    unidades: int
    receita: MoneyStr


class ClienteResumo(BaseModel):
    cliente_id: int
    nome: str
    pedidos: int
    receita: MoneyStr


class ResumoOut(BaseModel):
    pedidos: int
    unidades: int
    receita: MoneyStr
    por_produto: list[ProdutoResumo] = Field(description="Top produtos by receita")
    por_cliente: list[ClienteResumo] = Field(description="Top clientes by receita")


class RelatorioOut(BaseModel):
    pedidos: list[PedidoNomeado]
    next_cursor: str | None
    resumo: ResumoOut | None


class ClienteOut(BaseModel):
    id: int
    nome: str
    saldo: MoneyStr


class ProdutoOut(BaseModel):
    id: int
    nome: str
    preco: MoneyStr
    estoque: int


class ClientePage(BaseModel):
    clientes: list[ClienteOut]
    next_after: int | None


class ProdutoPage(BaseModel):
    produtos: list[ProdutoOut]
    next_after: int | None


class DatabaseTotals(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    por_estado: dict[str, int] = Field(
        description="Requests by state. RECEBIDO/PROCESSANDO: pending now; CONCLUIDO: every "
        "committed order; REJEITADO: every rejected order; ERRO: solicitacoes that failed"
    )
    pedidos: int
    unidades: int
    receita: MoneyStr


class InstanceOut(BaseModel):
    """The process that answered: with several instances, each has its own pool figures."""

    name: str = Field(description="PEDIDOS_INSTANCE_NAME, or the host name")
    pid: int


class StatusOut(BaseModel):
    instance: InstanceOut = Field(description="Whose figures `processor` and `accepting` are")
    accepting: bool = Field(description="False while this process drains for shutdown")
    processor: ProcessorStats = Field(
        description="Per process: this process's pool since it started (a restart zeroes it; "
        "other instances have their own)"
    )
    database: DatabaseTotals = Field(
        description="Database-wide: every instance sharing the database, across restarts"
    )
    database_id: str = Field(
        description="Fingerprint of the database this instance uses (no host or path in it): "
        "tools compare it to know they look at the same database"
    )


class SolicitacaoOut(BaseModel):
    """An order request: its state, and once settled the order or why it was rejected."""

    id: int
    estado: str = Field(description="RECEBIDO, PROCESSANDO, CONCLUIDO, REJEITADO or ERRO")
    tentativas: int
    criado_em: UtcDatetime
    atualizado_em: UtcDatetime
    pedido: PedidoOut | None = Field(description="The committed order (CONCLUIDO)")
    rejeicao: dict[str, Any] | None = Field(description="Why it was rejected or failed")


class SimulacaoIn(StrictInput):
    """A simulation: random orders from simulated users; quente_pct of them buy one produto."""

    pedidos: Annotated[int, Field(ge=1, le=100_000)] = 200
    concorrencia: Annotated[int, Field(ge=1, le=256)] = 16
    quente_pct: Annotated[int, Field(ge=0, le=100)] = 0


class LatencyOut(BaseModel):
    p50: float
    p95: float
    p99: float
    max: float


class SimulacaoOut(BaseModel):
    """A simulation's progress while it runs, and its figures once it is done."""

    id: int
    running: bool
    pedidos: int
    concorrencia: int
    quente_pct: int
    done: int = Field(description="Orders answered so far")
    seconds: float
    orders_per_second: float
    committed_per_second: float
    latency_ms: LatencyOut
    outcomes: dict[str, int] = Field(
        description="concluido, rejeitado, sobrecarga, desligando or falhou"
    )
    reasons: dict[str, int] = Field(description="Rejection reasons and error names")
    invariants_ok: bool | None = Field(description="None while running, or if it failed")
    violations: list[str]
    error: str | None = Field(description="Why the simulation could not finish, if it failed")


class SimulacaoList(BaseModel):
    simulacoes: list[SimulacaoOut]


class HealthOut(BaseModel):
    status: str


class ProblemOut(BaseModel):
    """RFC 9457 problem details; extension members vary by type."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
