#!/usr/bin/env bash
# Azure Key Vault stand-in: Lowkey Vault (a Key Vault REST API test double, a Spring Boot fat jar)
# on https://localhost:$KEYVAULT_PORT, its managed-identity token endpoint on
# http://127.0.0.1:$KEYVAULT_TOKEN_PORT/metadata/identity/oauth2/token.
# Usage: keyvault.sh start|stop|status|seed
#   start   resolve the jar into .stack/keyvault/lib if missing, start, wait, export the TLS cert, seed
#   seed    copy every Key Vault-valid NAME=VALUE of the secrets file into the vault (overwrites)
# The jar comes from `mvn -P keyvault` (jvm/pom.xml) or from $LOWKEY_VAULT_JAR (a local copy).
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
# Lowkey Vault only checks that an Authorization header is present; the value is ignored.
KV_AUTH="Authorization: Bearer lowkey-vault-local"

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

resolve_jar() {
  [ -n "$(kv_jar)" ] && return 0
  mkdir -p "$KV_LIB"
  if [ -n "${LOWKEY_VAULT_JAR:-}" ]; then
    [ -f "$LOWKEY_VAULT_JAR" ] || die "keyvault: LOWKEY_VAULT_JAR=$LOWKEY_VAULT_JAR does not exist"
    cp "$LOWKEY_VAULT_JAR" "$KV_LIB/"
  else
    log "keyvault: resolving Lowkey Vault with Maven (profile keyvault)"
    # The published jar is Spring Boot's executable fat jar and its pom declares no dependencies.
    mvn -B -q -s "$JVM_DIR/settings.xml" -f "$JVM_DIR/pom.xml" -P keyvault \
      dependency:copy-dependencies -DoutputDirectory="$KV_LIB" -DincludeScope=runtime \
      -DexcludeTransitive=true >"$LOG_DIR/keyvault-mvn.log" 2>&1 \
      || die "keyvault: Maven could not resolve the keyvault profile (see $LOG_DIR/keyvault-mvn.log)"
  fi
  [ -n "$(kv_jar)" ] || die "keyvault: no lowkey-vault-app*.jar in $KV_LIB. The jvm/pom.xml keyvault profile resolves none; put the jar there or set LOWKEY_VAULT_JAR=/path/to/lowkey-vault-app-<version>.jar"
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
  resolve_jar
  local java jar
  java="$(kv_java)"; jar="$(kv_jar)"
  [ -n "$java" ] || die "keyvault: no java found"
  mkdir -p "$KV_DIR"
  # Key Vault traffic on loopback only; the token connector has no address setting (binds all interfaces).
  (cd "$KV_DIR" && exec setsid nohup "$java" -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -jar "$jar" \
      --server.port="$KEYVAULT_PORT" --server.address=127.0.0.1 \
      --app.token.port="$KEYVAULT_TOKEN_PORT" \
      >>"$KV_LOG" 2>&1 </dev/null) &
  echo $! >"$KV_PID"
  log "keyvault: starting $(basename "$jar") with $java (pid $(cat "$KV_PID"), logs $KV_LOG)"
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
  local line name value code names=() skipped=0
  while IFS= read -r line || [ -n "$line" ]; do
    [[ "$line" == *=* ]] || continue
    name="${line%%=*}"; value="${line#*=}"
    if [[ ! "$name" =~ ^[A-Za-z0-9-]{1,127}$ ]]; then skipped=$((skipped + 1)); continue; fi
    code="$(printf '%s' "$value" \
      | python3 -c 'import json, sys; sys.stdout.write(json.dumps({"value": sys.stdin.read()}))' \
      | kv_curl -o /dev/null -w '%{http_code}' -X PUT -H "$KV_AUTH" -H 'Content-Type: application/json' \
          --data-binary @- "$KV_URL/secrets/$name?$KV_API")" || code="curl-error"
    [ "$code" = 200 ] || die "keyvault: setting secret $name failed (HTTP $code)"
    names+=("$name")
  done <"$SECRETS_FILE"
  log "keyvault: seeded ${#names[@]} secret(s)${names:+: ${names[*]}} (skipped $skipped non Key Vault name(s))"
}

# secret_count: names in the default vault, following nextLink pages.
secret_count() {
  local url="$KV_URL/secrets?$KV_API&maxresults=25" n=0 page
  while [ -n "$url" ]; do
    page="$(kv_curl -f -H "$KV_AUTH" "$url")" || return 1
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
    log "keyvault:      client env: KEYVAULT_URL=$KV_URL IDENTITY_ENDPOINT=$KV_TOKEN_URL IDENTITY_HEADER=local"
  else
    log "keyvault: DOWN (port $KEYVAULT_PORT)"; return 1
  fi
}

case "${1:-}" in
  start) start ;; stop) stop_pidfile keyvault "$KV_PID" ;; status) status ;; seed) seed ;;
  *) die "usage: $0 start|stop|status|seed" ;;
esac
