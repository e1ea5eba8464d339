#!/usr/bin/env bash
# A local Pedidos cluster on one machine, laid out as separate machines would be: a 3-node
# MariaDB Galera cluster, 3 Pedidos instances and HAProxy in front, each its own process on
# its own loopback ports, all state under $CLUSTER_DIR.
#
#   deploy/cluster.sh up [single|multi]   start (or resume) everything; default single-primary
#   deploy/cluster.sh down                stop everything, keep the data
#   deploy/cluster.sh clean               stop everything and delete $CLUSTER_DIR
#   deploy/cluster.sh status              what runs where
#   deploy/cluster.sh stop-node N | start-node N          one Galera node
#   deploy/cluster.sh stop-instance N | start-instance N  one Pedidos instance
#   deploy/cluster.sh restart-instance N  drain it in HAProxy, stop it gracefully, start it,
#                                         put it back: an upgrade that loses no order
#
# Settings (environment): CLUSTER_DIR (.cluster), CLUSTER_PORT_BASE (17000), CLUSTER_SEED
# (clientes/produtos seeded into an empty database, 1000), and any PEDIDOS_* variable, which
# the instances inherit. See docs/deploy.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$(mkdir -p "${CLUSTER_DIR:-$ROOT/.cluster}" && cd "${CLUSTER_DIR:-$ROOT/.cluster}" && pwd)"
RUN="$DIR/run"
BIN="${PEDIDOS_BIN:-$ROOT/.venv/bin}"
BASE="${CLUSTER_PORT_BASE:-17000}"
NODES=(1 2 3)
INSTANCES=(1 2 3)
GALERA_PROVIDER=/usr/lib/galera/libgalera_smm.so
DATABASE=pedidos

# Ports, all on 127.0.0.1: BASE is the balancer's HTTP port.
http_port() { echo "$BASE"; }
stats_port() { echo $((BASE + 9)); }
instance_port() { echo $((BASE + $1)); }              # BASE+1..3
writer_port() { echo $((BASE + 10 + $1)); }           # DB listener preferring node N: BASE+11..13
node_port() { echo $((BASE + 20 + $1)); }             # MariaDB: BASE+21..23
gcomm_port() { echo $((BASE + 30 + $1)); }            # Galera replication: BASE+31..33
ist_port() { echo $((BASE + 40 + $1)); }              # incremental state transfer
sst_port() { echo $((BASE + 50 + $1)); }              # full state transfer (rsync)

# How an instance is launched (from $ROOT): the one line to change for another server.
INSTANCE_COMMAND=("$BIN/gunicorn" -c "$ROOT/gunicorn.conf.py" 'pedidos.wsgi:app')

log() { echo "cluster: $*" >&2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

terminate() {  # terminate PIDFILE: SIGTERM, then up to 60 s for it to exit; fails if it did not
    local pid
    pid="$(cat "$1")"
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    return 1
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds="$1" what="$2"
    shift 2
    for _ in $(seq 1 $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    log "$what did not happen within $seconds s (logs: $DIR/log)"
    return 1
}

ensure_packages() {
    local missing=()
    [ -f "$GALERA_PROVIDER" ] || missing+=(galera-4)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v rsync >/dev/null || missing+=(rsync)
    command -v socat >/dev/null || missing+=(socat)
    command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        log "missing Debian packages: ${missing[*]} (install them as root)"
        exit 1
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

sql() {  # sql NODE STATEMENT: as root over the node's own socket
    mariadb --no-defaults -S "$DIR/node$1/mysqld.sock" -u root -N -B -e "$2"
}

node_synced() {
    [ "$(sql "$1" "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
        WHERE VARIABLE_NAME = 'WSREP_LOCAL_STATE_COMMENT'" 2>/dev/null)" = Synced ]
}

write_node_config() {
    local n="$1" peers
    peers="$(for m in "${NODES[@]}"; do printf '127.0.0.1:%s,' "$(gcomm_port "$m")"; done)"
    cat >"$DIR/node$n.cnf" <<EOF
[mariadbd]
datadir=$DIR/node$n/data
socket=$DIR/node$n/mysqld.sock
pid-file=$DIR/node$n/mysqld.pid
log-error=$DIR/log/node$n.err
port=$(node_port "$n")
bind-address=127.0.0.1
skip-name-resolve
# Not root: the rsync daemon that receives a state transfer would otherwise drop to
# 'nobody' and find the data directory closed to it.
user=mysql
innodb_buffer_pool_size=128M
# Galera replicates row images and needs interleaved auto-increment locks.
binlog_format=ROW
innodb_autoinc_lock_mode=2
default_storage_engine=InnoDB
# Durability comes from the write set being on every node before COMMIT returns; each node
# still flushes its log once a second.
innodb_flush_log_at_trx_commit=2
# Every table needs a primary key to replicate safely: refuse to create one without.
innodb_force_primary_key=ON
wsrep_mode=REQUIRED_PRIMARY_KEY
wsrep_on=ON
wsrep_provider=$GALERA_PROVIDER
wsrep_cluster_name=pedidos
wsrep_cluster_address=gcomm://${peers%,}
wsrep_node_name=node$n
wsrep_node_address=127.0.0.1:$(gcomm_port "$n")
wsrep_provider_options="base_port=$(gcomm_port "$n");ist.recv_addr=127.0.0.1:$(ist_port "$n");gcache.size=128M"
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:$(sst_port "$n")
wsrep_slave_threads=2
# Reads wait until this node has applied everything committed before them anywhere in the
# cluster: a request looked up on another node right after a failover is never missed.
wsrep_sync_wait=1
EOF
}

install_node() {
    local n="$1"
    mkdir -p "$DIR/node$n" "$DIR/log"
    chown mysql:mysql "$DIR/node$n"
    write_node_config "$n"
    [ -d "$DIR/node$n/data/mysql" ] && return 0
    mariadb-install-db --defaults-file="$DIR/node$n.cnf" --auth-root-authentication-method=normal \
        --user=mysql --skip-test-db >"$DIR/log/node$n.install" 2>&1
}

start_node() {  # start_node N [--wsrep-new-cluster]
    local n="$1"
    shift
    alive "$DIR/node$n/mysqld.pid" && return 0
    install_node "$n"
    # Started through setsid so that a test runner's process group never takes it down.
    setsid /usr/sbin/mariadbd --defaults-file="$DIR/node$n.cnf" "$@" </dev/null \
        >>"$DIR/log/node$n.out" 2>&1 &
    wait_for 120 "node$n synced" node_synced "$n"
    log "node$n synced on 127.0.0.1:$(node_port "$n")"
}

stop_node() {
    local n="$1" pidfile="$DIR/node$1/mysqld.pid"
    alive "$pidfile" || return 0
    terminate "$pidfile" || true
    log "node$n stopped"
}

# The node to bootstrap from: the one marked safe (it stopped last); after a crash of all
# of them, the one with the highest committed seqno, marked safe by hand.
bootstrap_node() {
    local n best="" best_seqno=-2 seqno
    for n in "${NODES[@]}"; do
        local state="$DIR/node$n/data/grastate.dat"
        [ -f "$state" ] || continue
        if grep -q '^safe_to_bootstrap: 1' "$state"; then echo "$n"; return; fi
        seqno="$(awk '/^seqno:/ {print $2}' "$state")"
        if [ "${seqno:--1}" -gt "$best_seqno" ]; then best="$n"; best_seqno="$seqno"; fi
    done
    if [ -n "$best" ]; then
        sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$DIR/node$best/data/grastate.dat"
        echo "$best"
    else
        echo 1
    fi
}

start_galera() {
    local running=() n
    for n in "${NODES[@]}"; do alive "$DIR/node$n/mysqld.pid" && running+=("$n"); done
    if [ ${#running[@]} -eq 0 ]; then
        local first
        first="$(bootstrap_node)"
        start_node "$first" --wsrep-new-cluster
        # Users come first so that the joiners receive them with the data.
        sql "$first" "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
            GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
            CREATE USER IF NOT EXISTS 'haproxy'@'127.0.0.1';
            CREATE DATABASE IF NOT EXISTS $DATABASE"
    fi
    for n in "${NODES[@]}"; do start_node "$n"; done
}

database_url() {  # database_url PORT
    echo "mysql+pymysql://root@127.0.0.1:$1/$DATABASE?charset=utf8mb4"
}

instance_database_port() {  # where instance N connects, by mode
    if [ "$(cat "$RUN/mode")" = multi ]; then writer_port "$1"; else writer_port 1; fi
}

render_haproxy() {
    local servers="" listeners="" i n m
    for i in "${INSTANCES[@]}"; do
        servers+="    server p$i 127.0.0.1:$(instance_port "$i") check"$'\n'
    done
    for n in "${NODES[@]}"; do
        listeners+="listen galera_node$n"$'\n'
        listeners+="    bind 127.0.0.1:$(writer_port "$n")"$'\n'
        listeners+="    mode tcp"$'\n'
        listeners+="    balance first"$'\n'
        listeners+="    option mysql-check user haproxy post-41"$'\n'
        # Longer than the pool's recycle time (30 min), so idle pooled connections survive.
        listeners+="    timeout client 35m"$'\n'
        listeners+="    timeout server 35m"$'\n'
        listeners+="    default-server inter 500ms fall 2 rise 3 on-marked-down shutdown-sessions"$'\n'
        listeners+="    server node$n 127.0.0.1:$(node_port "$n") check"$'\n'
        for m in "${NODES[@]}"; do
            [ "$m" = "$n" ] && continue
            listeners+="    server node$m 127.0.0.1:$(node_port "$m") check backup"$'\n'
        done
        listeners+=$'\n'
    done
    local template
    template="$(cat "$ROOT/deploy/haproxy.cfg.in")"
    template="${template//@RUN@/$RUN}"
    template="${template//@HTTP_PORT@/$(http_port)}"
    template="${template//@STATS_PORT@/$(stats_port)}"
    template="${template//@HTTP_SERVERS@/${servers%$'\n'}}"
    template="${template//@DB_LISTENERS@/${listeners%$'\n'}}"
    printf '%s\n' "$template" >"$RUN/haproxy.cfg"
}

start_haproxy() {
    alive "$RUN/haproxy.pid" && return 0
    render_haproxy
    haproxy -c -q -f "$RUN/haproxy.cfg"
    haproxy -D -f "$RUN/haproxy.cfg" -p "$RUN/haproxy.pid" 2>>"$DIR/log/haproxy.err"
    log "HAProxy on http://127.0.0.1:$(http_port) (stats http://127.0.0.1:$(stats_port)/)"
}

haproxy_command() {
    echo "$1" | socat stdio "unix-connect:$RUN/haproxy.sock"
}

server_stat() {  # server_stat BACKEND SERVER FIELD: one field of HAProxy's CSV statistics
    haproxy_command "show stat" | awk -F, -v b="$1" -v s="$2" -v f="$3" '$1 == b && $2 == s {print $f}'
}

prepare_database() {
    local url
    url="$(database_url "$(writer_port 1)")"
    wait_for 30 "the database through HAProxy" \
        mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P "$(writer_port 1)" -u root -e "SELECT 1"
    DATABASE_URL="$url" "$BIN/pedidos" init-db >/dev/null
    local count="${CLUSTER_SEED:-1000}"
    if [ "$count" -gt 0 ]; then
        DATABASE_URL="$url" "$BIN/pedidos" seed --if-empty --clientes "$count" \
            --produtos "$count" >/dev/null
    fi
}

instance_ready() { curl -fs "http://127.0.0.1:$(instance_port "$1")/readyz"; }

start_instance() {
    local i="$1" pidfile="$RUN/instance$1.pid"
    alive "$pidfile" && return 0
    (
        cd "$ROOT"
        export DATABASE_URL PEDIDOS_BIND PEDIDOS_INSTANCE_NAME PROMETHEUS_MULTIPROC_DIR
        DATABASE_URL="$(database_url "$(instance_database_port "$i")")"
        PEDIDOS_BIND="127.0.0.1:$(instance_port "$i")"
        PEDIDOS_INSTANCE_NAME="pedidos-$i"
        # Each instance stands for a machine of its own: its metrics are its own too.
        PROMETHEUS_MULTIPROC_DIR="$RUN/metrics$i"
        export PEDIDOS_GUNICORN_WORKERS="${PEDIDOS_GUNICORN_WORKERS:-1}"
        export PEDIDOS_ENV="${PEDIDOS_ENV:-production}"
        export PEDIDOS_ADMIN_TOKEN
        PEDIDOS_ADMIN_TOKEN="$(admin_token)"
        setsid "${INSTANCE_COMMAND[@]}" </dev/null >>"$DIR/log/instance$i.log" 2>&1 &
        echo $! >"$pidfile"
    )
    wait_for 60 "instance $i ready" instance_ready "$i"
    log "instance $i (pedidos-$i) on http://127.0.0.1:$(instance_port "$i")"
}

stop_instance() {  # SIGTERM: the instance drains (accepted orders finish) and exits
    local i="$1" pidfile="$RUN/instance$1.pid"
    alive "$pidfile" || return 0
    terminate "$pidfile" || kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
    log "instance $i stopped"
}

restart_instance() {
    local i="$1"
    haproxy_command "set server pedidos/p$i state drain" >/dev/null
    # Requests already on it finish; the balancer sends it nothing new.
    for _ in $(seq 1 300); do
        [ "$(server_stat "pedidos" "p$i" 5)" = 0 ] && break
        sleep 0.2
    done
    stop_instance "$i"
    start_instance "$i"
    haproxy_command "set server pedidos/p$i state ready" >/dev/null
    log "instance $i back in the pool"
}

# Production answers only to tokens: every instance shares one admin token, PEDIDOS_ADMIN_TOKEN
# when set, else one made at the first `up` and kept (mode 600) in the cluster's folder.
admin_token() {
    if [ -n "${PEDIDOS_ADMIN_TOKEN:-}" ]; then
        echo "$PEDIDOS_ADMIN_TOKEN"
        return
    fi
    if [ ! -s "$DIR/admin-token" ]; then
        (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$DIR/admin-token")
    fi
    cat "$DIR/admin-token"
}

up() {
    local mode="${1:-single}"
    case "$mode" in single | multi) ;; *) log "mode must be single or multi"; exit 2 ;; esac
    [ -x "$BIN/gunicorn" ] || { log "no $BIN/gunicorn: run make install first"; exit 1; }
    ensure_packages
    mkdir -p "$RUN" "$DIR/log"
    if [ -f "$RUN/mode" ] && [ "$(cat "$RUN/mode")" != "$mode" ]; then
        for i in "${INSTANCES[@]}"; do stop_instance "$i"; done
    fi
    echo "$mode" >"$RUN/mode"
    start_galera
    start_haproxy
    prepare_database
    for i in "${INSTANCES[@]}"; do start_instance "$i"; done
    log "up ($mode-primary): http://127.0.0.1:$(http_port)/"
    [ -n "${PEDIDOS_ADMIN_TOKEN:-}" ] || log "admin token (Authorization: Bearer ...): $DIR/admin-token"
}

down() {
    local i n
    for i in "${INSTANCES[@]}"; do stop_instance "$i"; done
    if alive "$RUN/haproxy.pid"; then
        kill -TERM "$(cat "$RUN/haproxy.pid")"
        rm -f "$RUN/haproxy.pid"
        log "HAProxy stopped"
    fi
    # The last node stopped is the one marked safe to bootstrap from next time.
    for n in 3 2 1; do stop_node "$n"; done
}

status() {
    local i n state
    echo "mode: $(cat "$RUN/mode" 2>/dev/null || echo none)   balancer: http://127.0.0.1:$(http_port)/"
    for n in "${NODES[@]}"; do
        state=stopped
        if alive "$DIR/node$n/mysqld.pid"; then
            state="$(sql "$n" "SELECT CONCAT(
                (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_LOCAL_STATE_COMMENT'),
                ', cluster size ',
                (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE'))" 2>/dev/null || echo unreachable)"
        fi
        echo "node$n      127.0.0.1:$(node_port "$n")  $state"
    done
    for i in "${INSTANCES[@]}"; do
        state=stopped
        alive "$RUN/instance$i.pid" && state="$(instance_ready "$i" >/dev/null && echo ready || echo "not ready")"
        echo "instance$i  127.0.0.1:$(instance_port "$i")  $state"
    done
    if alive "$RUN/haproxy.pid"; then
        # pxname, svname, current sessions and status of every server behind the balancer.
        haproxy_command "show stat" | awk -F, '$2 != "FRONTEND" && $2 != "BACKEND" && $1 !~ /^(#|stats|$)/ {
            printf "haproxy    %-14s %-7s %-6s sessions %s\n", $1, $2, $18, $5}'
    else
        echo "haproxy    stopped"
    fi
}

main() {
    local command="${1:-}"
    shift || true
    case "$command" in
    up) up "$@" ;;
    down) down ;;
    clean) down; rm -rf "$DIR" ;;
    status) status ;;
    stop-node) stop_node "$1" ;;
    start-node) start_node "$1" ;;
    stop-instance) stop_instance "$1" ;;
    start-instance) start_instance "$1" ;;
    restart-instance) restart_instance "$1" ;;
    *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
}

main "$@"
