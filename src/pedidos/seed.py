"""Demo data: clientes and produtos with Brazilian names, balances, prices and stock."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.orm import Session

from pedidos.models import (
    Cliente,
    Contador,
    ItemPedido,
    Pedido,
    Produto,
    Simulacao,
    Solicitacao,
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
