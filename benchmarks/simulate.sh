#!/usr/bin/env bash
# Simulator figures on MariaDB: a fresh seeded database, the service on the threaded server,
# then `pedidos simulate` at concurrency 1, 16 and 64, each run verifying the invariants.
# Tunables: BENCH_PEDIDOS (orders per run), BENCH_WORKERS, BENCH_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/serve.sh
BIN=.venv/bin
PORT="${BENCH_PORT:-5099}"
PEDIDOS="${BENCH_PEDIDOS:-2000}"
export DATABASE_URL="mysql://root@127.0.0.1:3306/pedidos_bench?charset=utf8mb4"
export PEDIDOS_WORKERS="${BENCH_WORKERS:-16}"

mariadb --protocol=tcp -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS pedidos_bench"
"$BIN/pedidos" init-db
"$BIN/pedidos" seed --reset --clientes 10000 --produtos 2000 --seed 1 2>/dev/null

serve_in_background "$PORT" "$BIN/pedidos" serve --port "$PORT"

for concorrencia in 1 16 64; do
    "$BIN/pedidos" simulate --pedidos "$PEDIDOS" --concorrencia "$concorrencia" \
        --url "http://127.0.0.1:$PORT" 2>/dev/null
done
