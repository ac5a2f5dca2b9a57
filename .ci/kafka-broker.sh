#!/usr/bin/env bash
# A real Kafka-protocol broker for the bridge tests: Tansu 0.6.0 (Apache-2.0,
# pure Rust) on loopback with SQLite storage in a temporary directory.
#
#   .ci/kafka-broker.sh install   build tansu into the cache unless it is there
#   .ci/kafka-broker.sh start     install, start on a free port, wait for it,
#                                 print `export VARVE_KAFKA_BOOTSTRAP=...` lines
#   .ci/kafka-broker.sh restart   stop and start again: same port, same data
#   .ci/kafka-broker.sh stop      stop the broker by its PID, remove its data
#   .ci/kafka-broker.sh test      start, run the bridge tests, stop
#
# Settings (environment):
#   VARVE_TANSU_ROOT   cargo install root of the cached tansu binary
#                      (default: <repo>/../.cache/tansu)
#   VARVE_KAFKA_STATE  directory of the running broker's state file
#                      (default: $TMPDIR/varve-kafka-broker)
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
TANSU_ROOT="${VARVE_TANSU_ROOT:-$(cd "$REPO/.." && pwd)/.cache/tansu}"
TANSU="$TANSU_ROOT/bin/tansu"
STATE_DIR="${VARVE_KAFKA_STATE:-${TMPDIR:-/tmp}/varve-kafka-broker}"
STATE="$STATE_DIR/broker.env"

install() {
    if [[ -x "$TANSU" ]]; then
        return
    fi
    echo "== building tansu 0.6.0 into $TANSU_ROOT (about 6 minutes on 2 cores)" >&2
    mkdir -p "$TANSU_ROOT"
    cargo install tansu --version 0.6.0 --locked --features libsql --debug --root "$TANSU_ROOT" >&2
}

# Tansu 0.6.0's SQLite schema has no index on its `header` table, and its
# fetch looks up each record's headers by (partition, offset): without an
# index every lookup scans every header ever stored, so a fetch costs
# O(records in the database) per record and reading a partition back is
# quadratic. Every record the bridge ships carries a header, so the broker
# is given the index it lacks once its schema exists.
index_headers() {
    python3 - "$DATA/tansu.db" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30)
for _ in range(300):
    if db.execute("select 1 from sqlite_master where type='table' and name='header'").fetchone():
        break
    time.sleep(0.1)
else:
    sys.exit("tansu created no header table within 30 s")
db.execute("create index if not exists header_topition_offset on header (topition, offset_id)")
db.commit()
PY
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {
    local port=$1 pid=$2
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "tansu exited; its log:" >&2
            cat "$DATA/tansu.log" >&2 || true
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "tansu did not open port $port within 30 s" >&2
    return 1
}

# Starts tansu on $PORT with its data in $DATA.
launch() {
    (
        cd "$DATA"
        # Clear tansu's own environment settings so the flags below rule.
        env -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE -u CLUSTER_ID \
            "$TANSU" broker \
            --listener-url "tcp://127.0.0.1:$PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$PORT" \
            --storage-engine "sqlite://tansu.db" \
            >>"$DATA/tansu.log" 2>&1 &
        echo $! >"$DATA/tansu.pid"
    )
    PID="$(cat "$DATA/tansu.pid")"
    wait_for_port "$PORT" "$PID"
    index_headers
    mkdir -p "$STATE_DIR"
    cat >"$STATE" <<EOF
export VARVE_KAFKA_BOOTSTRAP=127.0.0.1:$PORT
export VARVE_KAFKA_RESTART='$REPO/.ci/kafka-broker.sh restart'
export VARVE_KAFKA_STATE='$STATE_DIR'
TANSU_PID=$PID
TANSU_DATA='$DATA'
TANSU_PORT=$PORT
EOF
    grep '^export' "$STATE"
}

start() {
    install
    if [[ -f "$STATE" ]]; then
        stop
    fi
    DATA="$(mktemp -d "${TMPDIR:-/tmp}/varve-tansu.XXXXXX")"
    PORT="$(free_port)"
    launch
}

kill_broker() {
    # shellcheck disable=SC1090
    source "$STATE"
    if kill "$TANSU_PID" 2>/dev/null; then
        for _ in $(seq 1 100); do
            kill -0 "$TANSU_PID" 2>/dev/null || return 0
            sleep 0.1
        done
        kill -9 "$TANSU_PID" 2>/dev/null || true
    fi
}

stop() {
    [[ -f "$STATE" ]] || return 0
    kill_broker
    rm -rf "$TANSU_DATA"
    rm -f "$STATE"
}

restart() {
    [[ -f "$STATE" ]] || { echo "no broker is running (no $STATE)" >&2; exit 1; }
    kill_broker
    DATA="$TANSU_DATA"
    PORT="$TANSU_PORT"
    launch >/dev/null
}

run_tests() {
    start >/dev/null
    trap stop EXIT
    # shellcheck disable=SC1090
    source "$STATE"
    cd "$REPO"
    cargo test -p varve-changelog --features kafka --test 'kafka_*' -- --test-threads=1
    cargo test -p varve-db --features kafka --test kafka -- --test-threads=1
    cargo test -p varve-tools --features kafka --test cli_kafka_restore --test cli_restore_args -- --test-threads=1
}

case "${1:-}" in
install) install ;;
start) start ;;
restart) restart ;;
stop) stop ;;
test) run_tests ;;
*)
    echo "usage: $0 install|start|restart|stop|test" >&2
    exit 2
    ;;
esac
