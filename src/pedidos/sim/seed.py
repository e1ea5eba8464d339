"""Demo data: clientes and produtos with Brazilian names, balances, prices and stock, and
past pedidos that moved money and stock exactly as real orders do."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.orm import Session

from pedidos.orders import vendas
from pedidos.storage.models import (
    CENT,
    Cliente,
    Contador,
    Estado,
    ItemPedido,
    Pedido,
    Produto,
    Simulacao,
    Solicitacao,
    money_sum,
    utc_now,
)

BATCH = 5000

PRIMEIROS_NOMES = (
    "Ana",
    "Beatriz",
    "Bruna",
    "Camila",
    "Carla",
    "Cecília",
    "Clara",
    "Daniela",
    "Eduarda",
    "Fernanda",
    "Gabriela",
    "Helena",
    "Isabela",
    "Joana",
    "Júlia",
    "Larissa",
    "Laura",
    "Letícia",
    "Luana",
    "Manuela",
    "Mariana",
    "Natália",
    "Patrícia",
    "Rafaela",
    "Renata",
    "Sofia",
    "Valentina",
    "Vitória",
    "Alice",
    "Lorena",
    "Antônio",
    "Arthur",
    "Bernardo",
    "Bruno",
    "Caio",
    "Carlos",
    "Daniel",
    "Davi",
    "Diego",
    "Eduardo",
    "Felipe",
    "Francisco",
    "Gabriel",
    "Guilherme",
    "Gustavo",
    "Heitor",
    "Henrique",
    "João",
    "José",
    "Lucas",
    "Luiz",
    "Marcelo",
    "Mateus",
    "Miguel",
    "Paulo",
    "Pedro",
    "Rafael",
    "Rodrigo",
    "Samuel",
    "Thiago",
    "Vinícius",
)
SOBRENOMES = (
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Almeida",
    "Lopes",
    "Soares",
    "Fernandes",
    "Vieira",
    "Barbosa",
    "Rocha",
    "Dias",
    "Nascimento",
    "Andrade",
    "Moreira",
    "Nunes",
    "Marques",
    "Machado",
    "Mendes",
    "Freitas",
    "Cardoso",
    "Ramos",
    "Gonçalves",
    "Santana",
    "Teixeira",
    "Araújo",
    "Pinto",
    "Cavalcanti",
    "Monteiro",
    "Moura",
    "Correia",
    "Batista",
    "Campos",
)
PRODUTOS = (
    "Café torrado",
    "Feijão carioca",
    "Arroz agulhinha",
    "Farinha de mandioca",
    "Açúcar cristal",
    "Goiabada cascão",
    "Pão de queijo",
    "Doce de leite",
    "Erva-mate",
    "Guaraná",
    "Castanha-do-pará",
    "Tapioca",
    "Queijo minas",
    "Requeijão",
    "Cachaça artesanal",
    "Azeite",
    "Biscoito de polvilho",
    "Paçoca",
    "Rapadura",
    "Açaí",
    "Camiseta",
    "Chinelo",
    "Rede de dormir",
    "Chapéu de palha",
    "Caneca esmaltada",
    "Panela de barro",
    "Cuscuzeira",
    "Coador de pano",
    "Filtro de barro",
    "Toalha de banho",
    "Lençol",
    "Mochila",
    "Garrafa térmica",
    "Fone de ouvido",
    "Carregador",
    "Caderno",
    "Lápis de cor",
    "Bola de futebol",
    "Protetor solar",
    "Sabonete",
)
VARIANTES = (
    "tradicional",
    "premium",
    "orgânico",
    "artesanal",
    "extra",
    "clássico",
    "especial",
    "leve",
    "gourmet",
    "do sertão",
    "mineiro",
    "baiano",
    "gaúcho",
    "paraense",
    "capixaba",
    "nordestino",
)
TAMANHOS = ("P", "M", "G", "250 g", "500 g", "1 kg", "1 L", "2 L", "kit com 3", "unidade")


@dataclass(frozen=True)
class SeedReport:
    clientes: int
    produtos: int


def _cents(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randint(low, high)) / 100


def _clientes(rng: random.Random, count: int) -> Iterator[dict[str, Any]]:
    for _ in range(count):
        nome = f"{rng.choice(PRIMEIROS_NOMES)} {rng.choice(SOBRENOMES)} {rng.choice(SOBRENOMES)}"
        yield {"nome": nome, "saldo": _cents(rng, 5_000, 500_000)}


def _produtos(rng: random.Random, count: int) -> Iterator[dict[str, Any]]:
    for _ in range(count):
        nome = f"{rng.choice(PRODUTOS)} {rng.choice(VARIANTES)} {rng.choice(TAMANHOS)}"
        # A tenth of the catalog sells out quickly, so rejections show up in simulations.
        estoque = rng.randint(0, 5) if rng.random() < 0.1 else rng.randint(20, 1000)
        yield {"nome": nome, "preco": _cents(rng, 190, 89_990), "estoque": estoque}


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def reset(engine: Engine) -> None:
    """Delete every simulation, order, request, cliente and produto; zero the counters."""
    with Session(engine) as session, session.begin():
        for model in (Simulacao, ItemPedido, Pedido, Solicitacao, Produto, Cliente):
            session.execute(delete(model))
        session.execute(
            update(Contador).values(concluidos=0, rejeitados=0, erros=0, unidades=0, receita=0)
        )


def has_data(engine: Engine) -> bool:
    with Session(engine) as session:
        return session.execute(select(Cliente.id).limit(1)).first() is not None


def seed(
    engine: Engine,
    clientes: int,
    produtos: int,
    random_seed: int | None = None,
    progress: Callable[[int], None] = lambda _done: None,
) -> SeedReport:
    """Insert clientes and produtos in batched multi-row INSERTs; report rows as they land."""
    rng = random.Random(random_seed)
    for model, rows in ((Cliente, _clientes(rng, clientes)), (Produto, _produtos(rng, produtos))):
        for batch in _batches(rows):
            with engine.begin() as connection:
                connection.execute(insert(model), batch)
            progress(len(batch))
    return SeedReport(clientes, produtos)


# Past orders are drawn from at most this many clientes and produtos (the lowest ids), so
# memory stays bounded whatever the catalog's size.
SAMPLE = 100_000
ORDER_BATCH = 2000
TRIES = 8


@dataclass
class _Stock:
    ids: list[int]
    precos: list[Decimal]
    estoques: list[int]


def seed_pedidos(
    engine: Engine,
    pedidos: int,
    dias: int = 7,
    random_seed: int | None = None,
    progress: Callable[[int], None] = lambda _done: None,
) -> int:
    """Create up to `pedidos` past orders spread over the last `dias` days; return how many.

    Each is what a real order leaves behind: a CONCLUIDO solicitacao with the same id, the
    pedido and its items, saldo and estoque debited, the counters and the produtos' and
    clientes' sales aggregates raised. Rows go in with multi-row INSERTs and one joined
    UPDATE per table per batch, each batch one transaction. Past orders spend at most half
    of a cliente's saldo and never more estoque than there is; an order that does not fit
    after a few random picks is not created. Run it with no other traffic.
    """
    rng = random.Random(None if random_seed is None else random_seed + 1)
    with engine.connect() as connection:
        clientes = connection.execute(
            select(Cliente.id, Cliente.saldo).order_by(Cliente.id).limit(SAMPLE)
        ).all()
        produtos = connection.execute(
            select(Produto.id, Produto.preco, Produto.estoque).order_by(Produto.id).limit(SAMPLE)
        ).all()
        last_id = connection.execute(select(func.max(Solicitacao.id))).scalar() or 0
    if not clientes or not produtos:
        return 0
    # Past orders spend at most half of each cliente's saldo, so that the orders placed next
    # (a demo, a benchmark) still find money to spend.
    saldos = {row.id: (row.saldo / 2).quantize(CENT) for row in clientes}
    cliente_ids = list(saldos)
    stock = _Stock(
        [row.id for row in produtos],
        [row.preco for row in produtos],
        [row.estoque for row in produtos],
    )
    end = utc_now() - timedelta(minutes=1)
    step = timedelta(days=dias) / pedidos
    start = end - timedelta(days=dias)
    made = 0
    for first in range(0, pedidos, ORDER_BATCH):
        count = min(ORDER_BATCH, pedidos - first)
        moments = [start + step * (first + i + rng.random()) for i in range(count)]
        placed = []
        for moment in moments:
            # A few tries per order: a random pick may be unaffordable or out of stock.
            order = next(
                (o for o in (_order(rng, cliente_ids, saldos, stock) for _ in range(TRIES)) if o),
                None,
            )
            if order is not None:
                placed.append((moment, order))
        if placed:
            with engine.begin() as connection:
                _insert_orders(connection, last_id + made + 1, placed)
            made += len(placed)
        progress(count)
    return made


_Order = tuple[int, Decimal, list[tuple[int, int, Decimal]]]


def _order(
    rng: random.Random, cliente_ids: list[int], saldos: dict[int, Decimal], stock: _Stock
) -> _Order | None:
    """A cliente buying 1-3 produtos (1-3 units each), debited in memory from its budget;
    None when the budget does not cover it or no produto picked has the units."""
    cliente = rng.choice(cliente_ids)
    # Mostly one or two lines of one unit, as people buy.
    lines = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
    picks = {
        rng.randrange(len(stock.ids)): rng.choices((1, 2, 3), weights=(7, 2, 1))[0]
        for _ in range(lines)
    }
    itens = [
        (stock.ids[i], quantidade, stock.precos[i])
        for i, quantidade in sorted(picks.items())
        if stock.estoques[i] >= quantidade
    ]
    total = sum((quantidade * preco for _, quantidade, preco in itens), Decimal("0.00"))
    if not itens or total > saldos[cliente]:
        return None
    saldos[cliente] -= total
    for i, quantidade in picks.items():
        if stock.estoques[i] >= quantidade:
            stock.estoques[i] -= quantidade
    return cliente, total, itens


def _insert_orders(
    connection: Connection, first_id: int, placed: list[tuple[datetime, _Order]]
) -> None:
    ids = range(first_id, first_id + len(placed))
    connection.execute(
        insert(Solicitacao),
        [
            {
                "id": pedido_id,
                "payload": json.dumps(
                    {"cliente_id": cliente, "itens": [[p, q] for p, q, _ in itens]},
                    separators=(",", ":"),
                ),
                "estado": Estado.CONCLUIDO.value,
                "tentativas": 1,
                "criado_em": moment,
                "atualizado_em": moment,
            }
            for pedido_id, (moment, (cliente, _, itens)) in zip(ids, placed, strict=True)
        ],
    )
    connection.execute(
        insert(Pedido),
        [
            {"id": pedido_id, "cliente_id": cliente, "total": total, "criado_em": moment}
            for pedido_id, (moment, (cliente, total, _)) in zip(ids, placed, strict=True)
        ],
    )
    connection.execute(
        insert(ItemPedido),
        [
            {"pedido_id": pedido_id, "produto_id": p, "quantidade": q, "preco_unitario": preco}
            for pedido_id, (_, (_, _, itens)) in zip(ids, placed, strict=True)
            for p, q, preco in itens
        ],
    )
    in_batch = Pedido.id.between(ids[0], ids[-1])
    in_batch_items = ItemPedido.pedido_id.between(ids[0], ids[-1])
    spent = vendas.por_cliente(in_batch)
    # Raw column arithmetic: both sides are stored alike (cents on SQLite, DECIMAL elsewhere).
    connection.execute(
        update(Cliente)
        .where(Cliente.id == spent.c.id)
        .values(
            saldo=Cliente.saldo - spent.c.gasto,
            compras=Cliente.compras + spent.c.compras,
            gasto=Cliente.gasto + spent.c.gasto,
        )
    )
    sold = vendas.por_produto(in_batch_items)
    connection.execute(
        update(Produto)
        .where(Produto.id == sold.c.id)
        .values(
            estoque=Produto.estoque - sold.c.vendidos,
            vendidos=Produto.vendidos + sold.c.vendidos,
            receita=Produto.receita + sold.c.receita,
        )
    )
    unidades, receita = connection.execute(
        select(
            func.coalesce(func.sum(ItemPedido.quantidade), 0),
            money_sum(ItemPedido.quantidade * ItemPedido.preco_unitario),
        ).where(in_batch_items)
    ).one()
    connection.execute(
        update(Contador)
        .where(Contador.shard == 0)
        .values(
            concluidos=Contador.concluidos + len(placed),
            unidades=Contador.unidades + int(unidades),
            receita=Contador.receita + receita,
        )
    )
