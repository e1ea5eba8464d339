#!/usr/bin/env bash
# Memory of the serving processes over a long HTTP run: gunicorn (gunicorn.conf.py) on MariaDB
# under wrk for BENCH_SECONDS (default 600), the workers' RSS printed every minute.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/serve.sh
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
BIN=.venv/bin
PORT="${BENCH_PORT:-5093}"
SECONDS_TOTAL="${BENCH_SECONDS:-600}"
export DATABASE_URL="${BENCH_MARIADB_URL:-mysql://root@127.0.0.1:3306/pedidos_bench?charset=utf8mb4}"
export PEDIDOS_RECOVERY_INTERVAL=0

# Rich clientes and deep stock, so that the run is orders, not rejections.
prepare_wrk_catalog \
    "UPDATE clientes SET saldo = 9999999999.00; UPDATE produtos SET estoque = 1000000000" >/dev/null

serve_in_background "$PORT" "$BIN/gunicorn" -c gunicorn.conf.py -b "127.0.0.1:$PORT" 'pedidos.wsgi:app'
workers() { pgrep -P "$server" | tr '\n' ' '; }
rss() { ps -o rss= -p "$(workers | tr ' ' ',' | sed 's/,$//')" | awk '{printf "%.1f ", $1/1024}'; }

wrk -t2 -c64 -d"${SECONDS_TOTAL}s" -s benchmarks/wrk/pedido.lua "http://127.0.0.1:$PORT" \
    > /tmp/pedidos-soak-wrk.txt &
load=$!
echo "minute  worker RSS MiB  committed orders"
for minute in $(seq 0 $((SECONDS_TOTAL / 60))); do
    orders=$(mariadb --protocol=tcp -h 127.0.0.1 -u root -N -e "SELECT COUNT(*) FROM pedidos" pedidos_bench)
    printf "%6d  %s %s\n" "$minute" "$(rss)" "$orders"
    kill -0 "$load" 2>/dev/null || break
    sleep 60
done
wait "$load"
grep -E "Requests/sec|^requests|^latency" /tmp/pedidos-soak-wrk.txt
