#!/usr/bin/env bash
# Throughput, p99 and conflict-retry rate of the cluster (deploy/cluster.sh) through HAProxy:
# 1, 2 and 3 instances x single- and multi-primary x spread (10,000 produtos) and hot (one
# produto) orders, with wrk. Prints one table; non-2xx are 503s (409s for stock and saldo do not happen: both are
# topped up). BENCH_SECONDS per cell (8), BENCH_CONNECTIONS (32).
# Everything runs on this one machine, so the figures show how the parts share its cores.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
BIN=.venv/bin
export CLUSTER_DIR="${CLUSTER_DIR:-$PWD/.cluster-bench}"
export CLUSTER_PORT_BASE="${CLUSTER_PORT_BASE:-17500}"
export CLUSTER_SEED=0
SECONDS_PER_CELL="${BENCH_SECONDS:-8}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
BASE="$CLUSTER_PORT_BASE"
WRITER="$((BASE + 11))"
CATALOG=10000
trap 'deploy/cluster.sh clean >/dev/null 2>&1 || true' EXIT
# The instances run in production: one admin token for them, sent by wrk and curl.
PEDIDOS_ADMIN_TOKEN="${PEDIDOS_ADMIN_TOKEN:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}"
export PEDIDOS_ADMIN_TOKEN PEDIDOS_TOKEN="$PEDIDOS_ADMIN_TOKEN"

db() { mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P "$WRITER" -u root -N -B pedidos -e "$1"; }

# A fresh catalog; ids step by the cluster size, which pedido.lua is told.
prepare_catalog() {
    DATABASE_URL="mysql+pymysql://root@127.0.0.1:$WRITER/pedidos?charset=utf8mb4" \
        "$BIN/pedidos" seed --reset --clientes "$CATALOG" --produtos "$CATALOG" --seed 1 >/dev/null 2>&1
    db "UPDATE clientes SET saldo = 1000000; UPDATE produtos SET estoque = 1000000"
    read -r CLIENTE_MIN CLIENTE_STEP PRODUTO_MIN PRODUTO_STEP < <(db "SELECT
        MIN(id), (MAX(id) - MIN(id)) / (COUNT(*) - 1) FROM clientes
        UNION ALL SELECT MIN(id), (MAX(id) - MIN(id)) / (COUNT(*) - 1) FROM produtos" | paste -s)
    CLIENTE_STEP="${CLIENTE_STEP%.*}" PRODUTO_STEP="${PRODUTO_STEP%.*}"
    export CLIENTE_MIN CLIENTE_STEP PRODUTO_MIN PRODUTO_STEP CLIENTE_COUNT="$CATALOG"
}

# Retries by code and completed orders, summed over the running instances.
counters() {
    for i in 1 2 3; do
        curl -fs -H "Authorization: Bearer $PEDIDOS_TOKEN" "http://127.0.0.1:$((BASE + i))/status" || true
        echo
    done |
        python3 -c '
import json, sys
conflicts = completed = failed = 0
for line in sys.stdin:
    if line.strip():
        p = json.loads(line)["processor"]
        conflicts += sum(n for code, n in p["retries"].items() if code in ("1213", "1205", "1020"))
        completed += p["completed"] + sum(p["rejected"].values())
        failed += p["failed"]
print(conflicts, completed, failed)'
}

run_cell() {  # run_cell MODE INSTANCES LOAD
    local mode="$1" instances="$2" load="$3" out before after
    [ "$load" = hot ] && export PRODUTO_COUNT=1 || export PRODUTO_COUNT="$CATALOG"
    read -r c0 n0 f0 < <(counters)
    out="$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_CELL}s" -s benchmarks/wrk/pedido.lua \
        "http://127.0.0.1:$BASE")"
    read -r c1 n1 f1 < <(counters)
    python3 - "$mode" "$instances" "$load" "$c0" "$n0" "$c1" "$n1" "$((f1 - f0))" <<EOF
import re, sys
mode, instances, load, c0, n0, c1, n1, failed = sys.argv[1:]
out = """$out"""
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p99 = float(re.search(r"p99 ([\d.]+) ms", out).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
orders = max(1, int(n1) - int(n0))
rate = 100 * (int(c1) - int(c0)) / orders
print(f"| {mode}-primary | {instances} | {load} | {rps:,.0f} | {p99:,.1f} | {rate:.1f}% | {bad.group(1) if bad else 0} ({failed} gave up) |")
EOF
}

echo "| mode | instances | load | orders/s | p99 ms | conflict retries per order | non-2xx (orders that gave up after every retry) |"
echo "|---|---|---|---|---|---|---|"
for mode in single multi; do
    deploy/cluster.sh up "$mode" >/dev/null 2>&1
    prepare_catalog
    for instances in 1 2 3; do
        for i in 1 2 3; do
            if [ "$i" -le "$instances" ]; then
                deploy/cluster.sh start-instance "$i" >/dev/null 2>&1
            else
                deploy/cluster.sh stop-instance "$i" >/dev/null 2>&1
            fi
        done
        sleep 2  # the balancer's health checks settle on the instances now running
        for load in spread hot; do run_cell "$mode" "$instances" "$load"; done
    done
done
