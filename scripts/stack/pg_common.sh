# PostgreSQL helpers shared by postgres.sh (plain server) and citus.sh (coordinator + workers):
# sourced after common.sh, never run.

PG_USER=citus
PG_DB=citus
TLS_DIR="$STACK_DIR/tls"
PG_CA="$TLS_DIR/ca.crt"   # clients verify the servers with it (sslmode=verify-full)

run_as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_home NAME: a folder for NAME's data and socket that the `postgres` system user can enter:
# $STACK_DIR/NAME, or (a checkout under a private home or mktemp folder) a folder of its own.
pg_home() {
  local dir="$STACK_DIR/$1"
  if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$STACK_DIR" 2>/dev/null; then
    dir="/var/lib/postgresql/clickstream-$(printf '%s' "$STACK_DIR" | sha256sum | cut -c1-12)/$1"
  fi
  install -d -m 755 "$(dirname "$dir")"
  install -d -o postgres -g postgres -m 700 "$dir"
  echo "$dir"
}

# pg_password: the stack's database password (made once, kept in the secrets file).
pg_password() {
  local password; password="$(secret_get PG_PASSWORD)"
  if [ -z "$password" ]; then
    password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    secret_set PG_PASSWORD "$password"
  fi
  echo "$password"
}

# pg_tls_ca: the stack's private CA for PostgreSQL, made once (.stack/tls/ca.{crt,key}).
pg_tls_ca() {
  [ -f "$PG_CA" ] && [ -f "$TLS_DIR/ca.key" ] && return 0
  command -v openssl >/dev/null || die "postgres: openssl is needed to make the stack's TLS CA"
  install -d -m 700 "$TLS_DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=clickstream-pipeline local CA" \
    -keyout "$TLS_DIR/ca.key" -out "$PG_CA" >/dev/null 2>&1 || die "postgres: openssl could not make the CA"
  chmod 600 "$TLS_DIR/ca.key"; chmod 644 "$PG_CA"
  log "postgres: made the stack's TLS CA $PG_CA"
}

# pg_tls DATA [CLIENT_CA_COPY]: TLS for the server in DATA: a certificate for localhost and
# 127.0.0.1 signed by the stack's CA (made once per data folder), `ssl = on`, and TCP logins
# over TLS only (hostssl). Applied at every start, so older data folders get it too.
pg_tls() {
  local data="$1" tmp
  pg_tls_ca
  if ! openssl verify -CAfile "$PG_CA" "$data/server.crt" >/dev/null 2>&1; then
    tmp="$(mktemp -d)"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tmp/ext"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$tmp/server.key" \
      -out "$tmp/server.csr" >/dev/null 2>&1 || die "postgres: openssl could not make a key"
    openssl x509 -req -in "$tmp/server.csr" -CA "$PG_CA" -CAkey "$TLS_DIR/ca.key" \
      -CAcreateserial -days 3650 -extfile "$tmp/ext" -out "$tmp/server.crt" >/dev/null 2>&1 \
      || die "postgres: openssl could not sign the server certificate"
    install -o postgres -g postgres -m 600 "$tmp/server.key" "$data/server.key"
    install -o postgres -g postgres -m 644 "$tmp/server.crt" "$data/server.crt"
    rm -rf "$tmp"
  fi
  install -o postgres -g postgres -m 644 "$PG_CA" "$data/root.crt"
  cat >"$data/tls.conf" <<CONF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_ca_file = 'root.crt'
ssl_min_protocol_version = 'TLSv1.2'
CONF
  chown postgres:postgres "$data/tls.conf"
  grep -q "^include_if_exists = 'tls.conf'" "$data/postgresql.conf" ||
    echo "include_if_exists = 'tls.conf'" >>"$data/postgresql.conf"
  sed -i -E 's/^host(\s)/hostssl\1/' "$data/pg_hba.conf"
}

# pct_encode TEXT: TEXT percent-encoded for a JDBC URL's query (each byte but A-Z a-z 0-9 . _ ~ - /
# as %XX), as the project's connection-string parser reads it.
pct_encode() {
  local LC_ALL=C text="$1" out="" c i
  for ((i = 0; i < ${#text}; i++)); do
    c="${text:i:1}"
    case "$c" in
      [A-Za-z0-9._~/-]) out+="$c" ;;
      *) printf -v c '%%%02X' "'$c"; out+="$c" ;;
    esac
  done
  printf '%s' "$out"
}

# pg_url PORT: the stack's JDBC URL for the server on PORT, verifying it against the CA.
pg_url() {
  echo "jdbc:postgresql://127.0.0.1:$1/$PG_DB?user=$PG_USER&password=$(pct_encode "$(pg_password)")&sslmode=verify-full&sslrootcert=$(pct_encode "$PG_CA")"
}

# pg_initdb BIN DATA PORT SOCKET_DIR PRELOAD: a new data folder owned by `postgres`, user
# $PG_USER with the stack's password over TCP, trust on its own socket only.
pg_initdb() {
  local bin="$1" data="$2" port="$3" socket="$4" preload="$5" pwfile
  [ -x "$bin/initdb" ] || die "PostgreSQL 15 is not installed in $bin (run scripts/setup.sh)"
  install -d -o postgres -g postgres -m 700 "$data"
  pwfile="$(mktemp)"; pg_password >"$pwfile"; chown postgres "$pwfile"
  # initdb refuses to run as root: the data folder belongs to the postgres system user.
  run_as_postgres "$bin/initdb" -D "$data" -U "$PG_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$LOG_DIR/initdb-$port.log"
  rm -f "$pwfile"
  cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$socket'
shared_preload_libraries = '$preload'
cron.database_name = '$PG_DB'
# pg_cron runs jobs in background workers (no libpq login, so no password needed)
cron.use_background_workers = on
max_worker_processes = 32
max_connections = 200
wal_level = minimal
max_wal_senders = 0
synchronous_commit = off
max_wal_size = 4GB
CONF
}

# pg_start BIN DATA PORT [ENV=VALUE ...]: start the server (as `postgres`) and wait for it.
pg_start() {
  local bin="$1" data="$2" port="$3"; shift 3
  run_as_postgres env "$@" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null
  wait_for "postgres on $port" 30 "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"
}

# pg_stop BIN DATA: fast shutdown when running.
pg_stop() {
  [ -f "$2/postmaster.pid" ] || return 1
  run_as_postgres "$1/pg_ctl" -D "$2" -m fast -w stop >/dev/null
}

# pg_sql DATA PORT DB SQL...: run SQL as $PG_USER over the server's own socket (the folder
# its postmaster.pid names), where the login needs no password.
pg_sql() {
  local data="$1" port="$2" db="$3"; shift 3
  psql -X -q -h "$(sed -n 5p "$data/postmaster.pid")" -p "$port" -U "$PG_USER" -d "$db" \
    -v ON_ERROR_STOP=1 "$@"
}

# pg_ensure_database DATA PORT: create $PG_DB when missing.
pg_ensure_database() {
  if ! pg_sql "$1" "$2" postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    pg_sql "$1" "$2" postgres -c "CREATE DATABASE $PG_DB" >/dev/null
  fi
}

# pg_extensions_available DATA PORT: the stack's extensions this server offers.
pg_extensions_available() {
  pg_sql "$1" "$2" "$PG_DB" -tAc "SELECT string_agg(name || ' ' || default_version, ', ' ORDER BY name) FROM pg_available_extensions WHERE name IN ('hll','pg_cron','pg_partman','citus','topn')"
}

# pg_retention_status DATA PORT WHO: what the pipeline database keeps (the bootstrap's
# [retention]) and its last enforcement; nothing before the bootstrap.
pg_retention_status() {
  local data="$1" port="$2" who="$3" found
  found=$(pg_sql "$data" "$port" "$PG_DB" -tAc \
    "SELECT to_regclass('public.clickstream_retention') IS NOT NULL" 2>/dev/null) || return 0
  [ "$found" = t ] || return 0
  log "$who: retention: $(pg_sql "$data" "$port" "$PG_DB" -tAc "
    SELECT format('events %s (%s partitions), rollups %s, bookkeeping %s; %s',
      (SELECT coalesce(keep::text, 'all') FROM clickstream_retention WHERE kind = 'events'),
      (SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.events'::regclass),
      (SELECT string_agg(DISTINCT coalesce(keep::text, 'all'), ' / ')
         FROM clickstream_retention WHERE kind = 'rollup'),
      (SELECT string_agg(DISTINCT coalesce(keep::text, 'all'), ' / ')
         FROM clickstream_retention WHERE kind = 'bookkeeping'),
      coalesce((SELECT format('last run %s UTC, %s rows removed',
                              to_char(max(last_run_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                              sum(last_removed))
                FROM clickstream_retention HAVING max(last_run_at) IS NOT NULL),
               'not run yet'))")"
}
