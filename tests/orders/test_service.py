"""The order transaction on one thread: debits, records, and rejects without side effects."""

from __future__ import annotations

import json
import pickle
import random
from decimal import Decimal

import pytest
from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from pedidos.orders.transaction import (
    ClienteNaoEncontrado,
    EstoqueInsuficiente,
    ItemRequest,
    NadaParaSimular,
    PedidoRejeitado,
    PedidoRequest,
    ProdutoNaoEncontrado,
    SaldoInsuficiente,
    place_pedido,
    random_pedido_request,
)
from pedidos.storage.models import ItemPedido, Pedido
from tests.helpers import Store


def order(cliente_id: int, *itens: tuple[int, int]) -> PedidoRequest:
    return PedidoRequest(cliente_id, tuple(ItemRequest(p, q) for p, q in itens))


def test_order_debits_saldo_and_estoque_and_records_items(
    sessions: sessionmaker[Session], store: Store
) -> None:
    cliente = store.cliente("100.00")
    cafe = store.produto("12.35", 10)
    pao = store.produto("0.10", 5)

    # Duplicate lines merge; prices come from the database.
    with sessions.begin() as session:
        result = place_pedido(session, order(cliente, (pao, 2), (cafe, 3), (pao, 1)))

    assert result.total == Decimal("37.35")
    assert [(i.produto_id, i.quantidade, i.preco_unitario) for i in result.itens] == [
        (cafe, 3, Decimal("12.35")),
        (pao, 3, Decimal("0.10")),
    ]
    assert store.saldo(cliente) == Decimal("62.65")
    assert store.estoque(cafe) == 7
    assert store.estoque(pao) == 2
    with sessions.begin() as session:
        pedido = session.get_one(Pedido, result.id)
        assert (pedido.cliente_id, pedido.total) == (cliente, Decimal("37.35"))
        rows = session.execute(
            select(ItemPedido.produto_id, ItemPedido.quantidade, ItemPedido.preco_unitario)
            .where(ItemPedido.pedido_id == result.id)
            .order_by(ItemPedido.produto_id)
        ).all()
    assert [tuple(r) for r in rows] == [(cafe, 3, Decimal("12.35")), (pao, 3, Decimal("0.10"))]


def test_money_is_exact_to_the_cent(sessions: sessionmaker[Session], store: Store) -> None:
    # 0.10 + 0.20 is not 0.30 in binary floating point; here saldo must end at exactly zero.
    cliente = store.cliente("0.30")
    a = store.produto("0.10", 1)
    b = store.produto("0.20", 1)
    with sessions.begin() as session:
        result = place_pedido(session, order(cliente, (a, 1), (b, 1)))
    assert result.total == Decimal("0.30")
    assert store.saldo(cliente) == Decimal("0.00")
    assert store.ledger().vendido == Decimal("0.30")


def test_spending_the_whole_saldo_and_estoque_is_allowed(
    sessions: sessionmaker[Session], store: Store
) -> None:
    cliente = store.cliente("50.00")
    produto = store.produto("10.00", 5)
    with sessions.begin() as session:
        place_pedido(session, order(cliente, (produto, 5)))
    assert (store.saldo(cliente), store.estoque(produto)) == (Decimal("0.00"), 0)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("saldo", SaldoInsuficiente),
        ("estoque", EstoqueInsuficiente),
        ("cliente", ClienteNaoEncontrado),
        ("produto", ProdutoNaoEncontrado),
    ],
)
def test_rejection_leaves_every_table_untouched(
    engine: Engine,
    sessions: sessionmaker[Session],
    store: Store,
    case: str,
    expected: type[PedidoRejeitado],
) -> None:
    rico = store.cliente("1000.00")
    pobre = store.cliente("5.00")
    barato = store.produto("4.00", 100)
    escasso = store.produto("1.00", 2)
    with sessions.begin() as session:
        place_pedido(session, order(rico, (barato, 1)))  # existing history must survive too
    requests = {
        "saldo": order(pobre, (barato, 1), (escasso, 2)),
        "estoque": order(rico, (barato, 1), (escasso, 3)),
        "cliente": order(rico + pobre + 100, (barato, 1)),
        "produto": order(rico, (barato, 1), (escasso + 100, 1)),
    }
    before = store.snapshot()
    # The comparison covers every table there is, the request rows and counters included,
    # and the earlier order left rows in each of them to compare.
    assert set(before) == set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert all(before[table] for table in ("solicitacoes", "contadores", "pedidos"))

    with pytest.raises(expected), sessions.begin() as session:
        place_pedido(session, requests[case])

    assert store.snapshot() == before


def test_rejections_say_which_and_how_much(sessions: sessionmaker[Session], store: Store) -> None:
    cliente = store.cliente("5.00")
    produto = store.produto("4.00", 2)
    with pytest.raises(EstoqueInsuficiente) as estoque, sessions.begin() as session:
        place_pedido(session, order(cliente, (produto, 3)))
    assert estoque.value.details() == {"produto_id": produto, "disponivel": 2, "pedido": 3}
    with pytest.raises(SaldoInsuficiente) as saldo, sessions.begin() as session:
        place_pedido(session, order(cliente, (produto, 2)))
    assert saldo.value.details() == {"cliente_id": cliente, "saldo": "5.00", "total": "8.00"}


def test_rejections_survive_pickling_for_the_process_pool() -> None:
    original = EstoqueInsuficiente(7, 1, 3)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is EstoqueInsuficiente
    assert (copy.details(), str(copy)) == (original.details(), str(original))


def test_random_request_picks_existing_rows(sessions: sessionmaker[Session], store: Store) -> None:
    clientes = {store.cliente("10.00") for _ in range(5)}
    produtos = {store.produto("1.00", 1) for _ in range(5)}
    rng = random.Random(3)
    with sessions.begin() as session:
        picks = [random_pedido_request(session, rng) for _ in range(50)]
    assert {p.cliente_id for p in picks} <= clientes
    assert {p.itens[0].produto_id for p in picks} <= produtos
    assert len({p.cliente_id for p in picks}) > 1
    assert all(p.itens[0].quantidade == 1 for p in picks)


def test_random_request_on_an_empty_catalog_is_a_rejection(
    sessions: sessionmaker[Session],
) -> None:
    with pytest.raises(NadaParaSimular), sessions.begin() as session:
        random_pedido_request(session, random.Random())


def test_a_request_payload_is_the_canonical_json_of_what_was_asked() -> None:
    picks = random.Random(7)
    for _ in range(2000):
        lines = [
            (picks.randint(1, 2**63 - 1), picks.randint(1, 10_000))
            for _ in range(picks.randint(1, 3))
        ]
        request = order(picks.randint(1, 2**63 - 1), *lines)
        itens = [[i.produto_id, i.quantidade] for i in request.itens]
        canonical = json.dumps(
            {"cliente_id": request.cliente_id, "itens": itens}, separators=(",", ":")
        )
        assert request.to_payload() == canonical
        assert PedidoRequest.from_payload(canonical, 1).itens == request.itens
    # Not a plain integer (a bool here): written as json.dumps writes it, not as a number.
    assert order(True, (2, 1)).to_payload() == '{"cliente_id":true,"itens":[[2,1]]}'


def test_a_one_line_order_is_its_own_merged_line_and_repeats_merge_in_id_order() -> None:
    assert order(1, (9, 2)).merged_itens() == [ItemRequest(9, 2)]
    assert order(1, (9, 2), (3, 1), (9, 1)).merged_itens() == [ItemRequest(3, 1), ItemRequest(9, 3)]
