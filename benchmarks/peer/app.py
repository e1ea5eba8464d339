"""The peer: a minimal, correct raw-SQL Flask order app for the HTTP benchmark.

What a competent engineer writes in an afternoon, without Pedidos' machinery: a bodiless
`POST /pedido` buys one unit of a random produto (or of `?produto_id=N`) for a random cliente,
in one transaction: read the price, debit estoque and saldo with conditional UPDATEs (rowcount
checked, so concurrent orders can never oversell or overdraw), insert the pedido and its item.
PyMySQL, a small connection pool per process, no validation and no bookkeeping.

Run (from this folder): PEER_DATABASE=pedidos_peer gunicorn -k gthread -w 2 --threads 16 \
    'app:create_app()'   or   granian --interface wsgi --factory app:create_app
"""

from __future__ import annotations

import os
import queue
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, TypeAlias

import pymysql
from flask import Flask, Response, jsonify, request

if TYPE_CHECKING:
    Connection: TypeAlias = pymysql.connections.Connection[pymysql.cursors.Cursor]

SCHEMA = (
    """CREATE TABLE clientes (
        id INT PRIMARY KEY AUTO_INCREMENT,
        nome VARCHAR(120) NOT NULL,
        saldo DECIMAL(12,2) NOT NULL CHECK (saldo >= 0))""",
    """CREATE TABLE produtos (
        id INT PRIMARY KEY AUTO_INCREMENT,
        nome VARCHAR(120) NOT NULL,
        preco DECIMAL(12,2) NOT NULL,
        estoque INT NOT NULL CHECK (estoque >= 0))""",
    """CREATE TABLE pedidos (
        id BIGINT PRIMARY KEY AUTO_INCREMENT,
        cliente_id INT NOT NULL,
        total DECIMAL(12,2) NOT NULL,
        criado_em TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        FOREIGN KEY (cliente_id) REFERENCES clientes (id))""",
    """CREATE TABLE itens_pedido (
        id BIGINT PRIMARY KEY AUTO_INCREMENT,
        pedido_id BIGINT NOT NULL,
        produto_id INT NOT NULL,
        quantidade INT NOT NULL,
        preco_unitario DECIMAL(12,2) NOT NULL,
        FOREIGN KEY (pedido_id) REFERENCES pedidos (id),
        FOREIGN KEY (produto_id) REFERENCES produtos (id))""",
)

# Deadlock and lock wait timeout: the transaction is rolled back and tried again.
RETRIED = (1213, 1205)
ATTEMPTS = 5


class Pool:
    """A fixed-size pool of PyMySQL connections; a broken connection is replaced."""

    def __init__(self, size: int, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._idle: queue.LifoQueue[Connection | None] = queue.LifoQueue()
        for _ in range(size):
            self._idle.put(None)  # opened on first use

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        conn = self._idle.get(timeout=30) or self._connect()
        try:
            yield conn
        except pymysql.err.OperationalError:
            self._idle.put(None)  # the connection may be broken: the next user opens another
            if conn.open:
                conn.close()
            raise
        except BaseException:
            self._idle.put(conn)
            raise
        self._idle.put(conn)


class SemSaldoOuEstoque(Exception):
    """The cliente's saldo or the produto's estoque does not cover the order."""


def place_order(conn: Connection, cliente_id: int, produto_id: int) -> tuple[int, Decimal]:
    """One order of one unit, in one transaction; return the pedido id and its total."""
    conn.begin()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT preco FROM produtos WHERE id = %s", (produto_id,))
            row = cur.fetchone()
            if row is None:
                raise SemSaldoOuEstoque("produto")
            preco: Decimal = row[0]
            # Produto first, then cliente: one lock order for every transaction.
            cur.execute(
                "UPDATE produtos SET estoque = estoque - 1 WHERE id = %s AND estoque >= 1",
                (produto_id,),
            )
            if cur.rowcount != 1:
                raise SemSaldoOuEstoque("estoque")
            cur.execute(
                "UPDATE clientes SET saldo = saldo - %s WHERE id = %s AND saldo >= %s",
                (preco, cliente_id, preco),
            )
            if cur.rowcount != 1:
                raise SemSaldoOuEstoque("saldo")
            cur.execute(
                "INSERT INTO pedidos (cliente_id, total) VALUES (%s, %s)", (cliente_id, preco)
            )
            pedido_id = cur.lastrowid
            cur.execute(
                "INSERT INTO itens_pedido (pedido_id, produto_id, quantidade, preco_unitario)"
                " VALUES (%s, %s, 1, %s)",
                (pedido_id, produto_id, preco),
            )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return pedido_id, preco


def create_app() -> Flask:
    """The app with its own pool; the id ranges are read once per process."""
    app = Flask(__name__)

    def connect() -> Connection:
        return pymysql.connect(
            host=os.environ.get("PEER_HOST", "127.0.0.1"),
            port=int(os.environ.get("PEER_PORT", "3306")),
            user=os.environ.get("PEER_USER", "root"),
            password=os.environ.get("PEER_PASSWORD", ""),
            database=os.environ.get("PEER_DATABASE", "pedidos_peer"),
            charset="utf8mb4",
            autocommit=False,
        )

    pool = Pool(int(os.environ.get("PEER_POOL_SIZE", "16")), connect)
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT MIN(id), MAX(id) FROM clientes")
        clientes = cur.fetchone()
        cur.execute("SELECT MIN(id), MAX(id) FROM produtos")
        produtos = cur.fetchone()
        conn.rollback()
    assert clientes is not None and produtos is not None

    @app.post("/pedido")
    def pedido() -> tuple[Response, int]:
        cliente_id = random.randint(clientes[0], clientes[1])
        produto_id = request.args.get("produto_id", type=int) or random.randint(*produtos)
        for attempt in range(ATTEMPTS):
            try:
                with pool.connection() as conn:
                    pedido_id, total = place_order(conn, cliente_id, produto_id)
                return jsonify(id=pedido_id, total=str(total)), 201
            except SemSaldoOuEstoque as refused:
                return jsonify(error=f"insufficient {refused}"), 409
            except pymysql.err.OperationalError as error:
                if error.args[0] not in RETRIED or attempt == ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    return app
