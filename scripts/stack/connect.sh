#!/usr/bin/env bash
# Kafka Connect with Debezium's JDBC sink, the peer that benchmarks/peer_connect.py measures
# against the ingest job. Only its jars live here: the benchmark (and its test) start and stop
# the worker themselves, so nothing runs until they need it.
#   scripts/stack/connect.sh jars   resolve jvm/pom.xml's "connect" profile into .stack/connect/jars
#   scripts/stack/connect.sh path   print that folder
source "$(dirname "$0")/common.sh"

CONNECT_LIB="$STACK_DIR/connect/jars"

ensure_jars() {
  local stamp="$CONNECT_LIB/.resolved" want
  want="$(sha256sum "$JVM_DIR/pom.xml" "$JVM_DIR/settings.xml" | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "connect: $(ls "$CONNECT_LIB"/*.jar | wc -l) jars in $CONNECT_LIB are current"
    return 0
  fi
  command -v mvn >/dev/null || die "connect: Maven (mvn) is needed to resolve the jars"
  log "connect: resolving Kafka Connect and Debezium's JDBC sink from Maven Central"
  rm -rf "$CONNECT_LIB"; mkdir -p "$CONNECT_LIB"
  mvn -B -q -s "$JVM_DIR/settings.xml" -f "$JVM_DIR/pom.xml" -P connect dependency:copy-dependencies \
    -DoutputDirectory="$CONNECT_LIB" -DincludeScope=runtime >"$LOG_DIR/connect-mvn.log" 2>&1 \
    || die "connect: Maven could not resolve the jars (see $LOG_DIR/connect-mvn.log)"
  echo "$want" >"$stamp"
  log "connect: $(ls "$CONNECT_LIB"/*.jar | wc -l) jars in $CONNECT_LIB"
}

case "${1:-}" in
  jars) ensure_jars ;;
  path) echo "$CONNECT_LIB" ;;
  *) die "usage: $0 jars|path" ;;
esac
