#!/usr/bin/env bash
# PostgreSQL 15 with hll, pg_cron (preloaded) and pg_partman, in .stack/postgres on $PG_PORT.
# Usage: postgres.sh start|stop|status
source "$(dirname "$0")/common.sh"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_DATA="$STACK_DIR/postgres"
PG_SOCKET_DIR="$RUN_DIR"
# The server runs as the `postgres` system user; when it cannot reach this folder (a checkout
# under a private home or mktemp folder), the data and socket live in a folder of its own.
if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$STACK_DIR" 2>/dev/null; then
  private="/var/lib/postgresql/clickstream-$(printf '%s' "$STACK_DIR" | sha256sum | cut -c1-12)"
  install -d -o postgres -g postgres -m 700 "$private"
  PG_DATA="$private/data"; PG_SOCKET_DIR="$private"
fi
PG_USER=citus
PG_DB=citus

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

init_cluster() {
  [ -x "$PG_BIN/initdb" ] || die "PostgreSQL 15 is not installed (run scripts/setup.sh)"
  # initdb refuses to run as root: the data folder belongs to the postgres system user.
  local password; password="$(secret_get PG_PASSWORD)"
  [ -n "$password" ] || password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  secret_set PG_PASSWORD "$password"
  install -d -o postgres -g postgres -m 700 "$PG_DATA"
  local pwfile; pwfile="$(mktemp)"; printf '%s\n' "$password" > "$pwfile"; chown postgres "$pwfile"
  run_as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$LOG_DIR/initdb.log"
  rm -f "$pwfile"
  cat >>"$PG_DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
shared_preload_libraries = 'pg_cron'
cron.database_name = '$PG_DB'
# pg_cron runs jobs in background workers (no libpq login, so no password needed)
cron.use_background_workers = on
max_worker_processes = 32
max_connections = 200
shared_buffers = 512MB
wal_level = minimal
max_wal_senders = 0
synchronous_commit = off
max_wal_size = 4GB
CONF
  log "postgres: initialised $PG_DATA (user $PG_USER)"
}

run_as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  if pg_ready; then log "postgres: already running on 127.0.0.1:$PG_PORT (nothing changed)"; return 0; fi
  [ -f "$PG_DATA/PG_VERSION" ] || init_cluster
  if [ "$PG_SOCKET_DIR" = "$RUN_DIR" ]; then chown postgres "$RUN_DIR"; fi
  ln -sfn "$PG_DATA/server.log" "$LOG_DIR/postgres.log"
  run_as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 start >/dev/null
  wait_for postgres 30 pg_ready
  if ! psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    psql_admin -d postgres -c "CREATE DATABASE $PG_DB" >/dev/null
  fi
  local password; password="$(secret_get PG_PASSWORD)"
  # The lab's secret: a JDBC URL with user and password (resolved by the pipeline's secret resolver).
  secret_set Database-Connection-String \
    "jdbc:postgresql://127.0.0.1:$PG_PORT/$PG_DB?user=$PG_USER&password=$password&sslmode=disable"
  log "postgres: running on 127.0.0.1:$PG_PORT, database $PG_DB, data $PG_DATA"
}

psql_admin() { psql -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -v ON_ERROR_STOP=1 "$@"; }

stop() {
  if [ -f "$PG_DATA/postmaster.pid" ]; then
    run_as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null && log "postgres: stopped"
  else
    log "postgres: not running"
  fi
}

status() {
  if pg_ready; then
    local ext
    ext="$(psql_admin -tAc "SELECT string_agg(name || ' ' || default_version, ', ' ORDER BY name) FROM pg_available_extensions WHERE name IN ('hll','pg_cron','pg_partman','citus','topn')")"
    log "postgres: UP   127.0.0.1:$PG_PORT db=$PG_DB data=$PG_DATA extensions available: $ext"
  else
    log "postgres: DOWN (port $PG_PORT)"; return 1
  fi
}

case "${1:-}" in
  start) start ;; stop) stop ;; status) status ;;
  psql) shift; psql_admin "$@" ;;
  *) die "usage: $0 start|stop|status|psql [args]" ;;
esac
