"""The order path's statements on MariaDB: the locking read takes only the rows asked for,
even on a catalogue small enough that the optimizer would rather scan it whole; the writes
go in one statement, whose failure anywhere is raised and undone with its transaction."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError

from pedidos.orders.invariants import violations
from pedidos.orders.statements import Outcomes, PedidoRow, Writes, _literals, lock_rows, write
from pedidos.orders.transaction import PedidoResult, SaldoInsuficiente, place_pedidos
from pedidos.storage.engine import make_engine, make_sessions
from pedidos.storage.models import Pedido, Solicitacao, utc_now
from tests.helpers import Store, estado_of, order_request, record_request


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_the_locking_read_locks_only_the_rows_asked_for_on_a_small_catalogue(
    engine: Engine, store: Store
) -> None:
    produtos = [store.produto("1.00", 10) for _ in range(50)]
    clientes = [store.cliente("10.00") for _ in range(50)]
    asked, other = produtos[:30], produtos[-1]
    with engine.begin() as holder:
        stock = lock_rows(holder, asked, clientes[:30])
        assert sorted(stock.precos) == asked and sorted(stock.saldos) == clientes[:30]
        with engine.begin() as second:
            # NOWAIT fails at once on a row the first transaction locked.
            found = second.execute(
                text("SELECT id FROM produtos WHERE id = :id FOR UPDATE NOWAIT"), {"id": other}
            ).scalar_one()
            assert found == other
            with pytest.raises(OperationalError):
                second.execute(
                    text("SELECT id FROM produtos WHERE id = :id FOR UPDATE NOWAIT"),
                    {"id": asked[0]},
                )


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_the_locking_read_of_no_produtos_or_no_clientes_reads_nothing_of_that_table(
    engine: Engine, store: Store
) -> None:
    produto, cliente = store.produto("1.00", 10), store.cliente("10.00")
    with engine.begin() as db:
        only_clientes = lock_rows(db, [], [cliente])
        only_produtos = lock_rows(db, [produto], [])
    assert only_clientes.precos == {} and list(only_clientes.saldos) == [cliente]
    assert list(only_produtos.precos) == [produto] and only_produtos.saldos == {}


@pytest.fixture(params=["pymysql", "mysqldb"])
def driver_engine(request: pytest.FixtureRequest, engine: Engine) -> Iterator[Engine]:
    """The test's MariaDB database through each driver the service can run on."""
    url = engine.url.set(drivername=f"mysql+{request.param}")
    other = make_engine(url.render_as_string(hide_password=False))
    yield other
    other.dispose()


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_a_batch_writes_everything_in_one_statement_after_its_reads(
    driver_engine: Engine, store: Store
) -> None:
    produto = store.produto("2.50", 10)
    rico, pobre = store.cliente("100.00"), store.cliente("1.00")
    before = store.ledger()
    sent: list[str] = []
    event.listen(driver_engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    requests = [
        order_request(rico, produto, 2),
        order_request(pobre, produto, 1),
        order_request(rico, produto, 3),
    ]

    with make_sessions(driver_engine).begin() as session:
        outcomes = place_pedidos(session, requests)

    # The locking read, the request rows (their ids are the pedidos'), then one write.
    assert len(sent) == 3, sent
    assert sent[2].startswith("BEGIN NOT ATOMIC")
    assert [type(o) for o in outcomes] == [PedidoResult, SaldoInsuficiente, PedidoResult]
    assert store.estoque(produto) == 5
    assert store.saldo(rico) == Decimal("87.50")
    assert store.saldo(pobre) == Decimal("1.00")
    assert violations(before, store.ledger()) == []


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_recorded_and_direct_orders_in_one_batch_each_get_their_own_id(
    driver_engine: Engine, store: Store
) -> None:
    produto = store.produto("1.00", 100)
    rico, pobre = store.cliente("100.00"), store.cliente("0.50")
    ok_id = record_request(store.sessions, order_request(rico, produto, 2))
    no_id = record_request(store.sessions, order_request(pobre, produto))
    recorded_ok = replace(order_request(rico, produto, 2), solicitacao_id=ok_id)
    recorded_no = replace(order_request(pobre, produto), solicitacao_id=no_id)
    direct = [order_request(rico, produto, 3), order_request(pobre, produto, 1)]
    batch = [direct[0], recorded_ok, direct[1], recorded_no, order_request(rico, produto, 4)]
    before = store.ledger()

    with make_sessions(driver_engine).begin() as session:
        outcomes = place_pedidos(session, batch)

    first, second, third, fourth, fifth = outcomes
    assert isinstance(second, PedidoResult) and second.id == ok_id
    assert isinstance(third, SaldoInsuficiente) and isinstance(fourth, SaldoInsuficiente)
    assert isinstance(first, PedidoResult) and isinstance(fifth, PedidoResult)
    assert len({first.id, second.id, fifth.id}) == 3
    assert estado_of(store.sessions, no_id) == "REJEITADO"
    with store.sessions.begin() as session:
        for placed, request in ((first, batch[0]), (second, batch[1]), (fifth, batch[4])):
            pedido = session.get(Pedido, placed.id)
            assert pedido is not None and pedido.cliente_id == rico
            assert [(i.produto_id, i.quantidade) for i in pedido.itens] == [
                (produto, request.itens[0].quantidade)
            ]
            solicitacao = session.get(Solicitacao, placed.id)
            assert solicitacao is not None and solicitacao.estado == "CONCLUIDO"
    assert store.saldo(rico) == Decimal("91.00")
    assert violations(before, store.ledger()) == []


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_a_failure_inside_the_one_write_raises_and_its_earlier_statements_roll_back(
    driver_engine: Engine, store: Store
) -> None:
    produto, cliente = store.produto("2.00", 10), store.cliente("10.00")
    before = store.ledger()
    # The debit runs first in the compound statement; the item naming a produto that does
    # not exist fails its foreign key two statements later.
    broken = Writes(
        agora=utc_now(),
        produtos=[(produto, (1, Decimal("2.00")))],
        clientes=[(cliente, (1, Decimal("2.00")))],
        pedidos=[
            PedidoRow(None, "{}", cliente, Decimal("2.00"), [(produto + 1000, 1, Decimal("2.00"))])
        ],
        rejected=[],
        outcomes=Outcomes(concluidos=1, rejeitados=0, unidades=1, receita=Decimal("2.00")),
    )
    with driver_engine.connect() as db:
        db.begin()
        with pytest.raises(IntegrityError):
            write(db, broken)
        db.rollback()

    assert store.estoque(produto) == 10
    assert store.saldo(cliente) == Decimal("10.00")
    assert violations(before, store.ledger()) == []


# Quotes, a backslash, a percent sign, a comment marker and text beyond ASCII: what the
# writes escape themselves must arrive exactly as given.
AWKWARD = 'it\'s 100% \\ "quoted"; -- ção 🎉 %s'


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_text_values_of_the_writes_reach_the_database_exactly_as_given(
    driver_engine: Engine, store: Store
) -> None:
    produto, cliente = store.produto("2.05", 10), store.cliente("10.00")
    rejected = record_request(store.sessions, order_request(cliente, produto))
    writes = Writes(
        agora=utc_now(),
        produtos=[(produto, (1, Decimal("2.05")))],
        clientes=[(cliente, (1, Decimal("2.05")))],
        pedidos=[
            PedidoRow(None, AWKWARD, cliente, Decimal("2.05"), [(produto, 1, Decimal("2.05"))])
        ],
        rejected=[(rejected, AWKWARD[::-1])],
        outcomes=Outcomes(concluidos=1, rejeitados=1, unidades=1, receita=Decimal("2.05")),
    )
    with driver_engine.begin() as db:
        [pedido_id] = write(db, writes)

    with store.sessions.begin() as session:
        created, refused = session.get(Solicitacao, pedido_id), session.get(Solicitacao, rejected)
        assert created is not None and created.payload == AWKWARD
        assert refused is not None and refused.motivo == AWKWARD[::-1]
        assert refused.estado == "REJEITADO"
        pedido = session.get(Pedido, pedido_id)
        assert pedido is not None and pedido.total == Decimal("2.05")
    assert store.saldo(cliente) == Decimal("7.95")
    assert store.estoque(produto) == 9


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_numbers_are_written_as_their_digits_and_anything_unexpected_is_refused(
    driver_engine: Engine,
) -> None:
    with driver_engine.connect() as db:
        literal = _literals(db)
        assert [literal(v) for v in (7, Decimal("-2.50"), Decimal("1E+2"), None)] == [
            "7",
            "-2.50",
            "100",
            "NULL",
        ]
        for odd in (True, 1.5, Decimal("NaN"), b"x"):
            with pytest.raises(TypeError):
                literal(odd)  # type: ignore[arg-type]
