#!/usr/bin/env bash
# A PostgreSQL 15 server for the ledger's tests and benchmarks: Debian's binaries, a data
# directory under .run/pg owned by the postgres user (root cannot run the server), listening on
# 127.0.0.1:55432 only, trust authentication for the role `cscgate` on loopback, and the
# database `cscgate_test`. Idempotent; every wait is bounded.
#
#   scripts/postgres.sh start   # init if needed, start if not running, create role and database
#   scripts/postgres.sh stop
#   scripts/postgres.sh status
#   scripts/postgres.sh url     # postgres://cscgate@127.0.0.1:55432/cscgate_test
set -euo pipefail
cd "$(dirname "$0")/.."

PG_VERSION=${PG_VERSION:-15}
PGBIN=/usr/lib/postgresql/$PG_VERSION/bin
PORT=${CSCGATE_PG_PORT:-55432}
ROOT=$(pwd)
BASE=$ROOT/.run/pg
# A tree under a directory the postgres user may not enter (/root is 0700): the server's files
# go to a directory of its own under /var/tmp instead, named after the tree.
mkdir -p "$ROOT/.run"
if id postgres >/dev/null 2>&1 && ! runuser -u postgres -- test -x "$ROOT/.run" 2>/dev/null; then
  BASE=/var/tmp/cscgate-pg-$(printf %s "$ROOT" | sha1sum | cut -c1-12)
fi
DATA=$BASE/data
LOG=$BASE/postgres.log
URL="postgres://cscgate@127.0.0.1:$PORT/cscgate_test"

as_postgres() { runuser -u postgres -- "$@"; }

need_binaries() {
  if [ ! -x "$PGBIN/postgres" ]; then
    echo "postgres.sh: installing postgresql ($PGBIN missing)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  [ -x "$PGBIN/postgres" ] || { echo "postgres.sh: $PGBIN/postgres not found" >&2; exit 1; }
  id postgres >/dev/null 2>&1 || { echo "postgres.sh: no 'postgres' user (the postgresql package creates it)" >&2; exit 1; }
}

running() { [ -d "$DATA" ] && as_postgres "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

psql_admin() { as_postgres "$PGBIN/psql" -h "$BASE" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 -tAq "$@"; }

init() {
  mkdir -p "$BASE"
  chown postgres:postgres "$BASE"
  chmod 700 "$BASE"
  # The server reads its data directory through every parent: they must let it pass.
  if ! as_postgres test -x "$BASE"; then
    echo "postgres.sh: the postgres user cannot reach $BASE (a parent directory is not searchable)" >&2
    exit 1
  fi
  if [ ! -s "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    as_postgres "$PGBIN/initdb" -D "$DATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=reject >"$BASE/initdb.log" 2>&1 \
      || { cat "$BASE/initdb.log" >&2; exit 1; }
    # Loopback only; the admin socket lives beside the data, not in /var/run.
    as_postgres tee -a "$DATA/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$BASE'
max_connections = 200
EOF
    # Trust for the test role on loopback only; anything else is rejected.
    as_postgres tee "$DATA/pg_hba.conf" >/dev/null <<EOF
local all postgres trust
host  all cscgate 127.0.0.1/32 trust
host  all all     0.0.0.0/0    reject
EOF
  fi
}

start() {
  need_binaries
  init
  if ! running; then
    rm -f "$DATA/postmaster.pid"
    # 55432 lies in the kernel's ephemeral range: a client socket may hold it for a moment
    # (TIME_WAIT, a short connection). Keep it out of that range where allowed, and retry.
    if [ -w /proc/sys/net/ipv4/ip_local_reserved_ports ]; then
      grep -qw "$PORT" /proc/sys/net/ipv4/ip_local_reserved_ports \
        || echo "$PORT" >/proc/sys/net/ipv4/ip_local_reserved_ports 2>/dev/null || true
    fi
    started=0
    for _ in $(seq 1 10); do
      if as_postgres "$PGBIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 30 start >/dev/null 2>&1; then started=1; break; fi
      grep -q "Address already in use" <(tail -5 "$LOG") || break
      sleep 2
    done
    [ "$started" = 1 ] || { echo "postgres.sh: the server did not start; log:" >&2; tail -20 "$LOG" >&2; exit 1; }
  fi
  for _ in $(seq 1 60); do
    as_postgres "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.5
  done
  as_postgres "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" \
    || { echo "postgres.sh: not accepting connections on 127.0.0.1:$PORT" >&2; exit 1; }
  if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'cscgate'")" != 1 ]; then
    psql_admin -c "CREATE ROLE cscgate LOGIN CREATEDB"
  fi
  if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'cscgate_test'")" != 1 ]; then
    psql_admin -c "CREATE DATABASE cscgate_test OWNER cscgate"
  fi
  echo "postgres: $URL"
}

stop() {
  if running; then
    as_postgres "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >/dev/null
  fi
  echo "postgres: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "postgres: running on 127.0.0.1:$PORT"; else echo "postgres: not running"; exit 3; fi ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
