# Shared settings for the local stack scripts: sourced, never run.
# Every service keeps its data under $STACK_DIR (git-ignored) and listens on loopback only.
set -euo pipefail

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK_DIR="${STACK_DIR:-$PROJECT_DIR/.stack}"
VENV="${VENV:-$PROJECT_DIR/.venv}"
JVM_DIR="$PROJECT_DIR/jvm"
JARS_DIR="${JARS_DIR:-$STACK_DIR/jars}"
LOG_DIR="$STACK_DIR/logs"
RUN_DIR="$STACK_DIR/run"
SECRETS_FILE="$STACK_DIR/secrets.env"

PG_PORT="${PG_PORT:-55432}"
KAFKA_PORT="${KAFKA_PORT:-59092}"            # PLAINTEXT
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-59093}"  # SASL_SSL + PLAIN, the Event Hubs form
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-59094}"
S3_PORT="${S3_PORT:-59000}"
KEYVAULT_PORT="${KEYVAULT_PORT:-58443}"
CITUS_PORT="${CITUS_PORT:-55433}"          # coordinator; workers on the next two ports

mkdir -p "$STACK_DIR" "$LOG_DIR" "$RUN_DIR"

log() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# pid_alive FILE: true when FILE names a running process.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for DESCRIPTION SECONDS COMMAND...: retry COMMAND once a second until it succeeds.
wait_for() {
  local what="$1" secs="$2"; shift 2
  local i
  for ((i = 0; i < secs; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  die "$what did not come up within ${secs}s (logs: $LOG_DIR)"
}

# stop_pidfile NAME FILE: TERM the process, wait, then KILL.
stop_pidfile() {
  local name="$1" file="$2" i
  if ! pid_alive "$file"; then log "$name: not running"; rm -f "$file"; return 0; fi
  local pid; pid="$(cat "$file")"
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$file"
  log "$name: stopped"
}

# secret_set NAME VALUE: write NAME=VALUE into the local secrets file (mode 600), replacing any old value.
secret_set() {
  local name="$1" value="$2" tmp
  touch "$SECRETS_FILE"; chmod 600 "$SECRETS_FILE"
  tmp="$(mktemp "$STACK_DIR/.secrets.XXXXXX")"
  grep -v "^${name}=" "$SECRETS_FILE" > "$tmp" || true
  printf '%s=%s\n' "$name" "$value" >> "$tmp"
  chmod 600 "$tmp"; mv "$tmp" "$SECRETS_FILE"
}

# secret_get NAME: print the value of NAME from the local secrets file (empty when absent).
secret_get() { [ -f "$SECRETS_FILE" ] && grep "^$1=" "$SECRETS_FILE" | head -n1 | cut -d= -f2- || true; }
