#!/usr/bin/env bash
# A real Kafka-protocol broker for the bridge tests: Tansu 0.6.0 (Apache-2.0,
# pure Rust) on loopback with SQLite storage in a temporary directory.
#
#   .ci/kafka-broker.sh install   build tansu into the cache unless it is there
#   .ci/kafka-broker.sh start     install, start on a free port, wait for it,
#                                 print `export VARVE_KAFKA_BOOTSTRAP=...` lines
#   .ci/kafka-broker.sh restart   stop and start again: same port, same data
#   .ci/kafka-broker.sh stop      stop the broker by its PID, remove its data
#   .ci/kafka-broker.sh start-tls start two more brokers behind a TLS
#                                 terminator (stunnel): one plain, one that
#                                 requires SASL SCRAM-SHA-256; print
#                                 `export VARVE_KAFKA_TLS_...` lines
#   .ci/kafka-broker.sh stop-tls  stop them, remove their data and keys
#   .ci/kafka-broker.sh test      start both, run the bridge tests, stop
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
TLS_STATE="$STATE_DIR/tls.env"

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

# Waits until process $2 listens on port $1; $3 is its log, shown if it
# exits first.
wait_for_port() {
    local port=$1 pid=$2 log=$3
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$(basename "$log" .log) exited; its log:" >&2
            cat "$log" >&2 || true
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "$(basename "$log" .log) did not open port $port within 30 s" >&2
    return 1
}

# Starts tansu listening on port $2 with its data in directory $1, and
# advertising port $3 in metadata (clients connect there after
# bootstrapping: the TLS terminator's port for a broker behind one); further
# arguments go to tansu. Sets PID.
spawn_tansu() {
    local data=$1 port=$2 advertised=$3
    shift 3
    (
        cd "$data"
        # Clear tansu's own environment settings so the flags below rule.
        env -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE -u CLUSTER_ID \
            "$TANSU" broker \
            --listener-url "tcp://127.0.0.1:$port" \
            --advertised-listener-url "tcp://127.0.0.1:$advertised" \
            --storage-engine "sqlite://tansu.db" \
            "$@" \
            >>"$data/tansu.log" 2>&1 &
        echo $! >"$data/tansu.pid"
    )
    PID="$(cat "$data/tansu.pid")"
    wait_for_port "$port" "$PID" "$data/tansu.log"
    DATA="$data" index_headers
}

# Starts tansu on $PORT with its data in $DATA.
launch() {
    spawn_tansu "$DATA" "$PORT" "$PORT"
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

# Stops process $1: TERM, then KILL after 10 s.
kill_pid() {
    local pid=$1
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || return 0
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
}

kill_broker() {
    # shellcheck disable=SC1090
    source "$STATE"
    kill_pid "$TANSU_PID"
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


# --- TLS -----------------------------------------------------------------
#
# Tansu 0.6.0 takes --cert and --key but never wraps its connections in TLS
# (the acceptor it builds is unused), so TLS is terminated by stunnel in
# front of it. Kafka clients connect to the bootstrap address only to read
# metadata and then to the advertised address of each broker, so each
# broker behind stunnel advertises stunnel's port while it listens on its
# own: a client that bootstraps over TLS stays on TLS.
#
# Two brokers sit behind one stunnel: a plain one, and one started with
# --authentication (SASL SCRAM-SHA-256 and -512 against credentials in its
# storage; Tansu 0.6.0 builds no SASL PLAIN). Its user is written into its
# SQLite storage directly, as a broker that requires authentication takes
# no AlterUserScramCredentials before a client has authenticated.

# The stunnel binary, installed from Debian's stunnel4 package if missing.
stunnel_bin() {
    local bin
    bin="$(command -v stunnel4 || command -v stunnel || true)"
    if [[ -z "$bin" ]]; then
        if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
            echo "stunnel is missing: install Debian's stunnel4 (apt-get install stunnel4)" >&2
            return 1
        fi
        echo "== installing stunnel4" >&2
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q stunnel4 >&2; then
            apt-get update -q >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q stunnel4 >&2
        fi
        bin="$(command -v stunnel4 || command -v stunnel)"
    fi
    echo "$bin"
}

# A throwaway CA and a server certificate it signed for 127.0.0.1 and
# localhost (librdkafka checks the host name), plus a second CA that signed
# nothing, for the tests of a client that does not trust the server.
make_certs() {
    local dir=$1
    (
        cd "$dir"
        for ca in ca other-ca; do
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -keyout "$ca.key" -out "$ca.pem" -days 2 -subj "/CN=varve test $ca" \
                -addext "basicConstraints=critical,CA:TRUE" \
                -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        done
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
            "basicConstraints=CA:FALSE" "keyUsage=digitalSignature" \
            "extendedKeyUsage=serverAuth" >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out server.pem -days 2 -extfile server.ext 2>/dev/null
        rm -f ca.key other-ca.key server.csr server.ext ca.srl
    )
}

# Writes a SCRAM-SHA-256 credential for user $2 with password $3 into the
# storage of the broker whose data is in $1, as Tansu's own
# AlterUserScramCredentials would (RFC 5802 stored and server keys).
add_scram_user() {
    python3 - "$1/tansu.db" "$2" "$3" <<'PY'
import hashlib, hmac, os, sqlite3, sys, time
path, user, password = sys.argv[1:]
salt, iterations = os.urandom(16), 4096
salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
client_key = hmac.new(salted, b"Client Key", "sha256").digest()
stored_key = hashlib.sha256(client_key).digest()
server_key = hmac.new(salted, b"Server Key", "sha256").digest()
db = sqlite3.connect(path, timeout=30)
for _ in range(300):
    if db.execute("select 1 from sqlite_master where type='table' and name='scram_credential'").fetchone() \
            and db.execute("select 1 from cluster where name='tansu_cluster'").fetchone():
        break
    time.sleep(0.1)
else:
    sys.exit("tansu created no scram_credential table or cluster within 30 s")
db.execute(
    "insert into scram_credential (cluster, username, mechanism, salt, iterations, stored_key, server_key)"
    " select id, ?, 1, ?, ?, ?, ? from cluster where name = 'tansu_cluster'",
    (user, salt, iterations, stored_key, server_key),
)
db.commit()
PY
}

start_tls() {
    install
    if [[ -f "$TLS_STATE" ]]; then
        stop_tls
    fi
    local stunnel dir tls_port sasl_port tls_plain sasl_plain tls_pid sasl_pid stunnel_pid password
    stunnel="$(stunnel_bin)"
    dir="$(mktemp -d "${TMPDIR:-/tmp}/varve-tansu-tls.XXXXXX")"
    mkdir -p "$STATE_DIR"
    # Written first, so stop-tls cleans up whatever started before a failure.
    echo "TLS_DIR='$dir'" >"$TLS_STATE"
    make_certs "$dir"
    mkdir "$dir/tls" "$dir/sasl"
    tls_port="$(free_port)"
    tls_plain="$(free_port)"
    sasl_port="$(free_port)"
    sasl_plain="$(free_port)"
    spawn_tansu "$dir/tls" "$tls_plain" "$tls_port"
    tls_pid=$PID
    echo "TLS_TANSU_PID=$tls_pid" >>"$TLS_STATE"
    spawn_tansu "$dir/sasl" "$sasl_plain" "$sasl_port" --authentication
    sasl_pid=$PID
    echo "SASL_TANSU_PID=$sasl_pid" >>"$TLS_STATE"
    password="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    add_scram_user "$dir/sasl" varve "$password"
    cat >"$dir/stunnel.conf" <<EOF
foreground = yes
pid =
output = $dir/stunnel.log
cert = $dir/server.pem
key = $dir/server.key

[kafka-tls]
accept = 127.0.0.1:$tls_port
connect = 127.0.0.1:$tls_plain

[kafka-sasl-tls]
accept = 127.0.0.1:$sasl_port
connect = 127.0.0.1:$sasl_plain
EOF
    "$stunnel" "$dir/stunnel.conf" >>"$dir/stunnel.log" 2>&1 &
    stunnel_pid=$!
    echo "STUNNEL_PID=$stunnel_pid" >>"$TLS_STATE"
    wait_for_port "$tls_port" "$stunnel_pid" "$dir/stunnel.log"
    wait_for_port "$sasl_port" "$stunnel_pid" "$dir/stunnel.log"
    cat >>"$TLS_STATE" <<EOF
export VARVE_KAFKA_TLS_BOOTSTRAP=127.0.0.1:$tls_port
export VARVE_KAFKA_TLS_CA='$dir/ca.pem'
export VARVE_KAFKA_TLS_OTHER_CA='$dir/other-ca.pem'
export VARVE_KAFKA_SASL_BOOTSTRAP=127.0.0.1:$sasl_port
export VARVE_KAFKA_SASL_USER=varve
export VARVE_KAFKA_SASL_PASSWORD=$password
EOF
    grep '^export' "$TLS_STATE"
}

stop_tls() {
    [[ -f "$TLS_STATE" ]] || return 0
    local TLS_DIR='' TLS_TANSU_PID='' SASL_TANSU_PID='' STUNNEL_PID=''
    # shellcheck disable=SC1090
    source "$TLS_STATE"
    for pid in "$STUNNEL_PID" "$TLS_TANSU_PID" "$SASL_TANSU_PID"; do
        [[ -n "$pid" ]] && kill_pid "$pid"
    done
    [[ -n "$TLS_DIR" ]] && rm -rf "$TLS_DIR"
    rm -f "$TLS_STATE"
}

stop_all() {
    stop_tls
    stop
}

run_tests() {
    trap stop_all EXIT
    start >/dev/null
    # shellcheck disable=SC1090
    source "$STATE"
    cd "$REPO"
    cargo test -p varve-changelog --features kafka --test 'kafka_*' -- --test-threads=1
    cargo test -p varve-db --features kafka --test kafka -- --test-threads=1
    cargo test -p varve-tools --features kafka --test cli_kafka_restore --test cli_restore_args -- --test-threads=1
    # The same bridge over TLS (and SASL over TLS), librdkafka built with
    # OpenSSL; the TLS brokers start only now, so the plaintext tests run
    # as before.
    start_tls >/dev/null
    # shellcheck disable=SC1090
    source "$TLS_STATE"
    cargo test -p varve-changelog --features kafka-tls --test kafka_tls -- --test-threads=1
}

case "${1:-}" in
install) install ;;
start) start ;;
restart) restart ;;
stop) stop ;;
start-tls) start_tls ;;
stop-tls) stop_tls ;;
test) run_tests ;;
*)
    echo "usage: $0 install|start|restart|stop|start-tls|stop-tls|test" >&2
    exit 2
    ;;
esac
