"""The order path's statements on MariaDB: the locking read takes only the rows asked for,
even on a catalogue small enough that the optimizer would rather scan it whole."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from pedidos.orders.statements import lock_rows
from tests.helpers import Store


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
