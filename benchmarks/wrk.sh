#!/usr/bin/env bash
# Server-side HTTP throughput with a load generator written in C (wrk, Debian package `wrk`),
# so that Python client cost does not count against the server: gunicorn (gunicorn.conf.py,
# batching on) on MariaDB, random one-line orders over 10,000 clientes and 10,000 produtos.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/serve.sh
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
BIN=.venv/bin
PORT="${BENCH_PORT:-5096}"
export DATABASE_URL="mysql://root@127.0.0.1:3306/pedidos_bench?charset=utf8mb4"
export PEDIDOS_RECOVERY_INTERVAL=0

prepare_wrk_catalog

serve_in_background "$PORT" "$BIN/gunicorn" -c gunicorn.conf.py -b "127.0.0.1:$PORT" 'pedidos.wsgi:app'

for connections in 16 64; do
    echo "== $connections connections, 15 s"
    wrk -t2 -c"$connections" -d15s -s benchmarks/wrk/pedido.lua "http://127.0.0.1:$PORT" \
        | grep -E "Requests/sec|Non-2xx|^requests|^latency"
done
curl -s "http://127.0.0.1:$PORT/status"
echo
