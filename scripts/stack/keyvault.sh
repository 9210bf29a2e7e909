#!/usr/bin/env bash
# A local Azure Key Vault on https://localhost:$KEYVAULT_PORT with a managed-identity token endpoint
# on http://127.0.0.1:$KEYVAULT_TOKEN_PORT/metadata/identity/oauth2/token.
# Usage: keyvault.sh start|stop|status|seed
#   start   start the vault, wait, export its TLS cert, seed it from the secrets file
#   seed    copy every Key Vault-valid NAME=VALUE of the secrets file into the vault (overwrites)
# The vault is Lowkey Vault (a Spring Boot fat jar) when its jar can be had: $LOWKEY_VAULT_JAR,
# a copy in .stack/keyvault/lib, or `mvn -P keyvault`. Maven Central as reached here does not serve
# lowkey-vault-app, so otherwise the project's stand-in (keyvault_standin.py: the Key Vault
# secrets REST API over HTTPS, tokens only for the identity header) runs on the same ports.
# Newer Lowkey Vault releases need Java 25: set KEYVAULT_JAVA, else the newest JDK under /usr/lib/jvm is used.
source "$(dirname "$0")/common.sh"

KEYVAULT_TOKEN_PORT="${KEYVAULT_TOKEN_PORT:-58080}"
KV_DIR="$STACK_DIR/keyvault"
KV_LIB="$KV_DIR/lib"
KV_CA="$KV_DIR/ca.pem"
KV_PID="$RUN_DIR/keyvault.pid"
KV_LOG="$LOG_DIR/keyvault.log"
KV_URL="https://localhost:$KEYVAULT_PORT"
KV_TOKEN_URL="http://127.0.0.1:$KEYVAULT_TOKEN_PORT/metadata/identity/oauth2/token"
KV_API="api-version=7.4"
KV_TLS="$KV_DIR/tls"
KV_HEADER_FILE="$KV_DIR/identity-header"

kv_jar() { compgen -G "$KV_LIB/lowkey-vault-app*.jar" | head -n1; }

kv_java() {
  if [ -n "${KEYVAULT_JAVA:-}" ]; then printf '%s\n' "$KEYVAULT_JAVA"; return; fi
  local jdk
  jdk="$(compgen -G '/usr/lib/jvm/temurin-2[5-9]*' | sort -V | tail -n1 || true)"
  if [ -n "$jdk" ] && [ -x "$jdk/bin/java" ]; then printf '%s\n' "$jdk/bin/java"; else command -v java; fi
}

# curl against the vault: verify with the exported cert when there is one.
kv_curl() {
  local tls=(-k)
  [ -s "$KV_CA" ] && tls=(--cacert "$KV_CA")
  curl -sS --max-time 10 "${tls[@]}" "$@"
}

kv_up() { pid_alive "$KV_PID" && curl -sk --max-time 3 -o /dev/null -f "https://127.0.0.1:$KEYVAULT_PORT/ping"; }

# resolve_jar: true when a Lowkey Vault jar is (or can be made) available in $KV_LIB.
resolve_jar() {
  [ -n "$(kv_jar)" ] && return 0
  mkdir -p "$KV_LIB"
  if [ -n "${LOWKEY_VAULT_JAR:-}" ]; then
    [ -f "$LOWKEY_VAULT_JAR" ] || die "keyvault: LOWKEY_VAULT_JAR=$LOWKEY_VAULT_JAR does not exist"
    cp "$LOWKEY_VAULT_JAR" "$KV_LIB/"
  elif grep -q 'lowkey-vault-app' "$JVM_DIR/pom.xml"; then
    # The published jar is Spring Boot's executable fat jar and its pom declares no dependencies.
    mvn -B -q -s "$JVM_DIR/settings.xml" -f "$JVM_DIR/pom.xml" -P keyvault \
      dependency:copy-dependencies -DoutputDirectory="$KV_LIB" -DincludeScope=runtime \
      -DexcludeTransitive=true >"$LOG_DIR/keyvault-mvn.log" 2>&1 || true
  fi
  [ -n "$(kv_jar)" ]
}

# standin_tls: a self-signed certificate for localhost and 127.0.0.1, made once.
standin_tls() {
  [ -s "$KV_TLS/cert.pem" ] && return 0
  mkdir -p "$KV_TLS"; chmod 700 "$KV_TLS"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext "basicConstraints=critical,CA:true" \
    -keyout "$KV_TLS/key.pem" -out "$KV_TLS/cert.pem" >/dev/null 2>&1 || die "keyvault: openssl failed"
}

identity_header() {
  if [ -z "$(secret_get KEYVAULT_IDENTITY_HEADER)" ]; then
    secret_set KEYVAULT_IDENTITY_HEADER "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  fi
  (umask 077; secret_get KEYVAULT_IDENTITY_HEADER >"$KV_HEADER_FILE")
}

# Headers that carry a credential reach curl through a pipe it reads as a file (-H @/dev/fd/N,
# written by printf, a shell builtin), never on its command line, which any local user can read.

# token: a bearer token from the managed-identity endpoint, as azure-identity would get one.
token() {
  curl -sf --max-time 10 \
    -H @<(printf 'X-IDENTITY-HEADER: %s\n' "$(secret_get KEYVAULT_IDENTITY_HEADER)") \
    "$KV_TOKEN_URL?api-version=2019-08-01&resource=$KV_URL" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

# export_cert: the certificate the vault serves (self-signed, SAN localhost and 127.0.0.1), as PEM.
export_cert() {
  local tmp; tmp="$(mktemp "$KV_DIR/.ca.XXXXXX")"
  if openssl s_client -connect "127.0.0.1:$KEYVAULT_PORT" -servername localhost </dev/null 2>/dev/null \
      | openssl x509 -outform PEM >"$tmp" 2>/dev/null && [ -s "$tmp" ]; then
    mv "$tmp" "$KV_CA"
  else
    rm -f "$tmp"; log "keyvault: could not export the TLS certificate; clients must skip verification"
  fi
}

start() {
  if kv_up; then
    log "keyvault: already running on $KV_URL (pid $(cat "$KV_PID")) (nothing changed)"; return 0
  fi
  if pid_alive "$KV_PID"; then
    die "keyvault: pid $(cat "$KV_PID") is alive but not answering; run '$0 stop' first (logs: $KV_LOG)"
  fi
  rm -f "$KV_PID"
  local port
  for port in "$KEYVAULT_PORT" "$KEYVAULT_TOKEN_PORT"; do
    port_open "$port" && die "keyvault: port $port is already in use by another process"
  done
  mkdir -p "$KV_DIR"
  identity_header
  if resolve_jar; then
    local java jar
    java="$(kv_java)"; jar="$(kv_jar)"
    [ -n "$java" ] || die "keyvault: no java found"
    # Key Vault traffic on loopback only; the token connector has no address setting (binds all interfaces).
    (cd "$KV_DIR" && exec setsid nohup "$java" -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -jar "$jar" \
        --server.port="$KEYVAULT_PORT" --server.address=127.0.0.1 \
        --app.token.port="$KEYVAULT_TOKEN_PORT" \
        >>"$KV_LOG" 2>&1 </dev/null) &
    echo $! >"$KV_PID"
    log "keyvault: starting Lowkey Vault $(basename "$jar") with $java (pid $(cat "$KV_PID"), logs $KV_LOG)"
  else
    standin_tls
    (exec setsid nohup "$VENV/bin/python" "$(dirname "$0")/keyvault_standin.py" "$KEYVAULT_PORT" \
        "$KEYVAULT_TOKEN_PORT" "$KV_TLS/cert.pem" "$KV_TLS/key.pem" "$KV_HEADER_FILE" \
        >>"$KV_LOG" 2>&1 </dev/null) &
    echo $! >"$KV_PID"
    log "keyvault: no Lowkey Vault jar (not served by Maven Central here; set LOWKEY_VAULT_JAR): starting the project's Key Vault stand-in (pid $(cat "$KV_PID"))"
  fi
  local i t0=$SECONDS
  for ((i = 0; i < 120; i++)); do
    kv_up && break
    pid_alive "$KV_PID" || die "keyvault: the process exited during start-up (logs: $KV_LOG)"
    sleep 1
  done
  kv_up || die "keyvault: not healthy within 120s (logs: $KV_LOG)"
  export_cert
  log "keyvault: running on $KV_URL after $((SECONDS - t0))s (token endpoint $KV_TOKEN_URL)"
  seed
}

# seed: every NAME=VALUE of the secrets file whose NAME is a valid Key Vault secret name
# (1-127 letters, digits, dashes) becomes a secret of the default vault. Values never reach argv or logs.
seed() {
  kv_up || die "keyvault: not running (run '$0 start')"
  [ -f "$SECRETS_FILE" ] || { log "keyvault: no $SECRETS_FILE, nothing to seed"; return 0; }
  local line name value code names=() skipped=0 auth
  auth="Authorization: Bearer $(token)" || die "keyvault: no token from $KV_TOKEN_URL"
  while IFS= read -r line || [ -n "$line" ]; do
    [[ "$line" == *=* ]] || continue
    name="${line%%=*}"; value="${line#*=}"
    if [[ ! "$name" =~ ^[A-Za-z0-9-]{1,127}$ ]]; then skipped=$((skipped + 1)); continue; fi
    code="$(printf '%s' "$value" \
      | python3 -c 'import json, sys; sys.stdout.write(json.dumps({"value": sys.stdin.read()}))' \
      | kv_curl -o /dev/null -w '%{http_code}' -X PUT -H @<(printf '%s\n' "$auth") \
          -H 'Content-Type: application/json' --data-binary @- "$KV_URL/secrets/$name?$KV_API")" \
      || code="curl-error"
    [ "$code" = 200 ] || die "keyvault: setting secret $name failed (HTTP $code)"
    names+=("$name")
  done <"$SECRETS_FILE"
  log "keyvault: seeded ${#names[@]} secret(s)${names:+: ${names[*]}} (skipped $skipped non Key Vault name(s))"
}

# secret_count: names in the default vault, following nextLink pages.
secret_count() {
  local url="$KV_URL/secrets?$KV_API&maxresults=25" n=0 page auth
  auth="Authorization: Bearer $(token)" || return 1
  while [ -n "$url" ]; do
    page="$(kv_curl -f -H @<(printf '%s\n' "$auth") "$url")" || return 1
    n=$((n + $(printf '%s' "$page" | python3 -c 'import json, sys; print(len(json.load(sys.stdin).get("value") or []))')))
    url="$(printf '%s' "$page" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("nextLink") or "")')"
  done
  printf '%s\n' "$n"
}

status() {
  if kv_up; then
    local count; count="$(secret_count || echo '?')"
    log "keyvault: UP   $KV_URL pid=$(cat "$KV_PID") secrets=$count"
    log "keyvault:      token endpoint $KV_TOKEN_URL"
    if [ -s "$KV_CA" ]; then log "keyvault:      TLS cert $KV_CA"; else log "keyvault:      TLS cert not exported: skip verification"; fi
    log "keyvault:      client env: IDENTITY_ENDPOINT=$KV_TOKEN_URL IDENTITY_HEADER=<KEYVAULT_IDENTITY_HEADER from $SECRETS_FILE>"
  else
    log "keyvault: DOWN (port $KEYVAULT_PORT)"; return 1
  fi
}

case "${1:-}" in
  start) start ;; stop) stop_pidfile keyvault "$KV_PID" ;; status) status ;; seed) seed ;;
  *) die "usage: $0 start|stop|status|seed" ;;
esac
