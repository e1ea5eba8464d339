# Sourced by the benchmark scripts: serve_in_background PORT COMMAND... starts the service,
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
