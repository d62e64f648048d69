# Sourced by .ci/run: makes TEST_POSTGRES_URL point at a PostgreSQL the tests may use.
# Uses the one given, else starts a private throw-away cluster (installing PostgreSQL if absent).

start_private_postgres() {
    local bindir initdb
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$initdb" ] && ! command -v initdb >/dev/null 2>&1; then
        echo "installing postgresql ..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    fi
    [ -n "$initdb" ] || initdb=$(command -v initdb)
    bindir=$(dirname "$initdb")
    PG_DIR=$(mktemp -d /tmp/aiwyn-ci-pg.XXXXXX)
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local as_pg=()
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$PG_DIR"
        as_pg=(runuser -u postgres --)
    fi
    "${as_pg[@]}" "$bindir/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
        -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    PG_STOP=("${as_pg[@]}" "$bindir/pg_ctl" -D "$PG_DIR/data" -m fast stop)
    export TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    echo "started a private PostgreSQL on port $port"
}

stop_private_postgres() {
    if [ -n "${PG_DIR:-}" ]; then
        "${PG_STOP[@]}" >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
}

if [ -z "${TEST_POSTGRES_URL:-}" ]; then
    start_private_postgres
    trap stop_private_postgres EXIT
fi
