# Sourced by the benchmark scripts. serve_in_background PORT COMMAND... starts the service,
# stops it when the script exits, and returns once /readyz answers (10 s at most).
serve_in_background() {
    local port="$1"
    shift
    "$@" >/dev/null 2>&1 &
    server=$!
    trap 'kill "$server" 2>/dev/null || true' EXIT
    for _ in $(seq 1 50); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && return 0
        sleep 0.2
    done
    echo "the service did not become ready on port $port" >&2
    return 1
}

# prepare_wrk_catalog [SQL]: a fresh pedidos_bench with 10,000 clientes and 10,000 produtos for
# benchmarks/wrk/pedido.lua (SQL, if given, runs after seeding), and the id ranges it reads
# exported. Uses DATABASE_URL and $BIN/pedidos; the seed's summary goes to stdout.
prepare_wrk_catalog() {
    mariadb --protocol=tcp -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS pedidos_bench"
    "$BIN/pedidos" init-db >/dev/null
    "$BIN/pedidos" seed --reset --clientes 10000 --produtos 10000 --seed 1 2>/dev/null
    if [ -n "${1:-}" ]; then
        mariadb --protocol=tcp -h 127.0.0.1 -u root pedidos_bench -e "$1"
    fi
    read -r CLIENTE_MIN PRODUTO_MIN < <(mariadb --protocol=tcp -h 127.0.0.1 -u root -N -e \
        "SELECT (SELECT MIN(id) FROM clientes), (SELECT MIN(id) FROM produtos)" pedidos_bench)
    export CLIENTE_MIN PRODUTO_MIN CLIENTE_COUNT=10000 PRODUTO_COUNT=10000
}
