#!/usr/bin/env bash
# A Citus cluster: a coordinator on $CITUS_PORT and two workers on the next two ports, each a
# PostgreSQL 15 server with citus and pg_cron preloaded (hll, topn and pg_partman available),
# data under .stack/citus. The Citus tier of the tests and `--env local-citus` use it.
#
# Where the binaries come from, first that exists:
#   1. a Citus installed into the system's PostgreSQL 15 (citus.so beside Debian's server);
#   2. the bundle in ../shared/citus (Citus, TopN and pg_partman 5 prebuilt for Debian 12),
#      extracted into a private copy of PostgreSQL (.stack/citus/pg), so the system's server
#      keeps Debian's pg_partman 4.7 and no Citus;
#   3. neither: `start` says so, writes the reason to .stack/citus.unavailable (the tests skip
#      the Citus tier with it) and exits 0.
# Usage: citus.sh start|stop [coordinator|worker1|worker2]|status|psql [args]
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/pg_common.sh"

SYSTEM_PG=/usr/lib/postgresql/15
# (`|| true`: without ../shared, ls fails and pipefail would end the script before it can say so)
CITUS_BUNDLE="${CITUS_BUNDLE:-$(ls "$PROJECT_DIR"/../shared/citus/citus-*_pg15_debian12_amd64.tar.gz 2>/dev/null | head -n1 || true)}"
UNAVAILABLE="$STACK_DIR/citus.unavailable"
WORKER_PORTS=("$((CITUS_PORT + 1))" "$((CITUS_PORT + 2))")
NODES=(coordinator worker1 worker2)
PORTS=("$CITUS_PORT" "${WORKER_PORTS[@]}")
CITUS_HOME="$(pg_home citus)"
PREFIX="$CITUS_HOME/pg"
PGPASS="$CITUS_HOME/pgpass"

# Sets PG_BIN and SOURCE, or returns 1 with the reason in REASON.
find_citus() {
  if [ -f "$SYSTEM_PG/lib/citus.so" ]; then
    PG_BIN="$SYSTEM_PG/bin"; SOURCE="installed Citus in $SYSTEM_PG"; return 0
  fi
  if [ -z "$CITUS_BUNDLE" ] || [ ! -f "$CITUS_BUNDLE" ]; then
    REASON="no Citus installed in $SYSTEM_PG and no bundle at ../shared/citus (set CITUS_BUNDLE)"
    return 1
  fi
  [ -x "$SYSTEM_PG/bin/postgres" ] || { REASON="PostgreSQL 15 is not installed (run scripts/setup.sh)"; return 1; }
  PG_BIN="$PREFIX/lib/postgresql/15/bin"; SOURCE="bundle $(basename "$CITUS_BUNDLE") in $PREFIX"
  # The private copy is rebuilt when the system's server, its extensions or the bundle change.
  local want; want="$(sha256sum "$CITUS_BUNDLE" | cut -c1-16)-$(cat "$SYSTEM_PG/lib"/*.so "$SYSTEM_PG/bin/postgres" | sha256sum | cut -c1-16)"
  if [ "$(cat "$PREFIX/.stamp" 2>/dev/null)" != "$want" ]; then
    log "citus: building a private PostgreSQL 15 with $(basename "$CITUS_BUNDLE") in $PREFIX"
    rm -rf "$PREFIX"; mkdir -p "$PREFIX/lib/postgresql" "$PREFIX/share/postgresql"
    cp -a "$SYSTEM_PG" "$PREFIX/lib/postgresql/15"
    cp -a /usr/share/postgresql/15 "$PREFIX/share/postgresql/15"
    tar -xzf "$CITUS_BUNDLE" -C "$PREFIX" --strip-components=1 usr
    echo "$want" >"$PREFIX/.stamp"
  fi
}

node_data() { echo "$CITUS_HOME/$1"; }
ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1"; }

init_node() {
  local name="$1" port="$2" data; data="$(node_data "$name")"
  pg_initdb "$PG_BIN" "$data" "$port" "$data" citus,pg_cron
  cat >>"$data/postgresql.conf" <<CONF
shared_buffers = 256MB
# Citus commits a transaction that wrote to several nodes with two-phase commit
max_prepared_transactions = 200
# two-phase commits a node restart left prepared are finished after 5 s (Citus's default: 1 min)
citus.recover_2pc_interval = '5s'
# a test cluster: losing it on a power cut costs nothing
fsync = off
full_page_writes = off
CONF
  log "citus: initialised $name ($data, port $port)"
}

# The nodes reach each other with the stack's password, from a file only `postgres` reads.
write_pgpass() {
  install -o postgres -g postgres -m 600 /dev/null "$PGPASS"
  printf '127.0.0.1:*:*:%s:%s\n' "$PG_USER" "$(pg_password)" >"$PGPASS"
}

coordinator_sql() { pg_sql "$(node_data coordinator)" "$CITUS_PORT" "$PG_DB" "$@"; }

# Every node gets the database and the citus extension; the coordinator learns the workers.
join_cluster() {
  local i
  for i in "${!NODES[@]}"; do
    pg_ensure_database "$(node_data "${NODES[$i]}")" "${PORTS[$i]}"
    pg_sql "$(node_data "${NODES[$i]}")" "${PORTS[$i]}" "$PG_DB" -c "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS citus" >/dev/null
  done
  coordinator_sql -tAc "SELECT citus_set_coordinator_host('127.0.0.1', $CITUS_PORT)" >/dev/null
  for port in "${WORKER_PORTS[@]}"; do
    coordinator_sql -tAc "SELECT 1 FROM pg_dist_node WHERE nodeport = $port" | grep -q 1 ||
      coordinator_sql -tAc "SELECT citus_add_node('127.0.0.1', $port)" >/dev/null
  done
}

start() {
  if ! find_citus; then
    echo "$REASON" >"$UNAVAILABLE"
    log "citus: not available: $REASON; the Citus tier of the tests is skipped"
    return 0
  fi
  rm -f "$UNAVAILABLE"
  write_pgpass
  local i name port started=()
  for i in "${!NODES[@]}"; do
    name="${NODES[$i]}"; port="${PORTS[$i]}"
    if ready "$port"; then continue; fi
    [ -f "$(node_data "$name")/PG_VERSION" ] || init_node "$name" "$port"
    ln -sfn "$(node_data "$name")/server.log" "$LOG_DIR/citus-$name.log"
    pg_tls "$(node_data "$name")"
    # the nodes reach each other over TLS too, verified against the stack's CA
    echo "citus.node_conninfo = 'sslmode=verify-full sslrootcert=$(node_data "$name")/root.crt'" \
      >>"$(node_data "$name")/tls.conf"
    pg_start "$PG_BIN" "$(node_data "$name")" "$port" PGPASSFILE="$PGPASS"
    started+=("$name")
  done
  join_cluster
  secret_set Citus-Database-Connection-String "$(pg_url "$CITUS_PORT")"
  if ((${#started[@]})); then
    log "citus: running (${started[*]} started) from $SOURCE: coordinator 127.0.0.1:$CITUS_PORT, workers ${WORKER_PORTS[*]}, database $PG_DB"
  else
    log "citus: already running on 127.0.0.1:$CITUS_PORT (nothing changed)"
  fi
}

# stop [NODE]: every node (workers first), or the one named.
stop() {
  local i bin="$PREFIX/lib/postgresql/15/bin"
  [ -x "$bin/pg_ctl" ] || bin="$SYSTEM_PG/bin"
  for ((i = ${#NODES[@]} - 1; i >= 0; i--)); do
    [ -z "${1:-}" ] || [ "$1" = "${NODES[$i]}" ] || continue
    if pg_stop "$bin" "$(node_data "${NODES[$i]}")"; then log "citus: ${NODES[$i]} stopped"; fi
  done
}

status() {
  if [ -f "$UNAVAILABLE" ]; then log "citus: not available: $(cat "$UNAVAILABLE")"; return 0; fi
  find_citus >/dev/null 2>&1 || PG_BIN="$SYSTEM_PG/bin"
  local i rc=0
  for i in "${!NODES[@]}"; do
    if ready "${PORTS[$i]}"; then
      log "citus: UP   ${NODES[$i]} 127.0.0.1:${PORTS[$i]} data=$(node_data "${NODES[$i]}")"
    else
      log "citus: DOWN ${NODES[$i]} (port ${PORTS[$i]})"; rc=1
    fi
  done
  if ((rc == 0)); then
    log "citus: $(coordinator_sql -tAc "SELECT citus_version() FROM pg_extension WHERE extname = 'citus'" | cut -d, -f1); workers in the metadata: $(coordinator_sql -tAc "SELECT string_agg(nodename || ':' || nodeport, ' ' ORDER BY nodeport) FROM pg_dist_node WHERE groupid <> 0 AND isactive"); extensions available: $(pg_extensions_available "$(node_data coordinator)" "$CITUS_PORT")"
    pg_retention_status "$(node_data coordinator)" "$CITUS_PORT" citus
  fi
  return $rc
}

case "${1:-}" in
  start) start ;; stop) stop "${2:-}" ;; status) status ;;
  psql) shift; find_citus >/dev/null 2>&1 || true; coordinator_sql "$@" ;;
  *) die "usage: $0 start|stop [NODE]|status|psql [args]" ;;
esac
