#!/usr/bin/env bash
# PostgreSQL 15 with hll, pg_cron (preloaded) and pg_partman, in .stack/postgres on $PG_PORT.
# Usage: postgres.sh start|stop|status|psql [args]
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/pg_common.sh"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_DATA="$(pg_home postgres)"  # its socket lives there too

start() {
  if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    log "postgres: already running on 127.0.0.1:$PG_PORT (nothing changed)"; return 0
  fi
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    pg_initdb "$PG_BIN" "$PG_DATA" "$PG_PORT" "$PG_DATA" pg_cron
    echo "shared_buffers = 512MB" >>"$PG_DATA/postgresql.conf"
    log "postgres: initialised $PG_DATA (user $PG_USER)"
  fi
  ln -sfn "$PG_DATA/server.log" "$LOG_DIR/postgres.log"
  pg_tls "$PG_DATA"
  pg_start "$PG_BIN" "$PG_DATA" "$PG_PORT"
  pg_ensure_database "$PG_DATA" "$PG_PORT"
  # The lab's secret: a JDBC URL with user and password (resolved by the pipeline's secret
  # resolver), TLS verified against the stack's CA.
  secret_set Database-Connection-String "$(pg_url "$PG_PORT")"
  log "postgres: running on 127.0.0.1:$PG_PORT (TLS, CA $PG_CA), database $PG_DB, data $PG_DATA"
}

stop() {
  if pg_stop "$PG_BIN" "$PG_DATA"; then log "postgres: stopped"; else log "postgres: not running"; fi
}

status() {
  if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    log "postgres: UP   127.0.0.1:$PG_PORT db=$PG_DB data=$PG_DATA extensions available: $(pg_extensions_available "$PG_DATA" "$PG_PORT")"
    pg_retention_status "$PG_DATA" "$PG_PORT" postgres
  else
    log "postgres: DOWN (port $PG_PORT)"; return 1
  fi
}

case "${1:-}" in
  start) start ;; stop) stop ;; status) status ;;
  psql) shift; pg_sql "$PG_DATA" "$PG_PORT" "$PG_DB" "$@" ;;
  *) die "usage: $0 start|stop|status|psql [args]" ;;
esac
