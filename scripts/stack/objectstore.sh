#!/usr/bin/env bash
# An S3-compatible object store on $S3_PORT for s3a:// checkpoints and the Delta lake:
# S3Proxy (Java, from Maven Central) serving the folder .stack/objectstore/data, so buckets
# and objects survive restarts. Buckets in $S3_BUCKETS are created at start.
# Usage: objectstore.sh start|stop|status
# A second instance (the benchmark's): S3_PORT, OBJECTSTORE_HOME (its data) and OBJECTSTORE_PID.
source "$(dirname "$0")/common.sh"

OS_LIB="$STACK_DIR/objectstore/lib"
OS_HOME="${OBJECTSTORE_HOME:-$STACK_DIR/objectstore}"
OS_DATA="$OS_HOME/data"
PID_FILE="${OBJECTSTORE_PID:-$RUN_DIR/objectstore.pid}"
S3_BUCKETS="${S3_BUCKETS:-checkpoints lake}"
ENDPOINT="http://127.0.0.1:$S3_PORT"
JAVA="${JAVA:-java}"

s3() { "$VENV/bin/python" - "$@" <<'PY'
import os, sys
import boto3
from botocore.config import Config
s3 = boto3.client(
    "s3", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
    aws_access_key_id=os.environ["AK"], aws_secret_access_key=os.environ["SK"],
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
)
have = {b["Name"] for b in s3.list_buckets()["Buckets"]}
if sys.argv[1] == "create":
    for name in sys.argv[2:]:
        if name not in have:
            s3.create_bucket(Bucket=name)
            print(f"[stack] objectstore: created bucket {name}")
else:
    print(" ".join(sorted(have)) or "(no buckets)")
PY
}

credentials() {
  [ -n "$(secret_get S3-Access-Key)" ] || secret_set S3-Access-Key "local$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  [ -n "$(secret_get S3-Secret-Key)" ] || secret_set S3-Secret-Key "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
  export ENDPOINT AK SK
  AK="$(secret_get S3-Access-Key)"; SK="$(secret_get S3-Secret-Key)"
}

ensure_jars() {
  ls "$OS_LIB"/s3proxy-*.jar >/dev/null 2>&1 && return 0
  command -v mvn >/dev/null || die "objectstore: Maven (mvn) is needed to resolve S3Proxy"
  log "objectstore: resolving S3Proxy from Maven Central into $OS_LIB"
  rm -rf "$OS_LIB.tmp"; mkdir -p "$(dirname "$OS_LIB")"
  mvn -B -q -s "$JVM_DIR/settings.xml" -f "$JVM_DIR/pom.xml" -P objectstore dependency:copy-dependencies \
    -DoutputDirectory="$OS_LIB.tmp" -DincludeScope=runtime >"$LOG_DIR/objectstore-mvn.log" 2>&1 \
    || die "objectstore: Maven could not resolve S3Proxy (see $LOG_DIR/objectstore-mvn.log)"
  mv "$OS_LIB.tmp" "$OS_LIB"
}

write_logging() {
  cat >"$OS_HOME/logback.xml" <<'XML'
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{ISO8601} %-5level %logger{0} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
</configuration>
XML
}

# The properties carry the credential: handed over on a pipe, never written to a file or argv.
properties() {
  printf '%s\n' "s3proxy.endpoint=$ENDPOINT" "s3proxy.authorization=aws-v2-or-v4" \
    "s3proxy.identity=$AK" "s3proxy.credential=$SK" \
    "jclouds.provider=filesystem-nio2" "jclouds.filesystem.basedir=$OS_DATA"
}

start() {
  credentials
  if pid_alive "$PID_FILE" && port_open "$S3_PORT"; then
    log "objectstore: already running on $ENDPOINT (nothing changed)"
    return 0
  fi
  port_open "$S3_PORT" && die "port $S3_PORT is taken by another process"
  ensure_jars; mkdir -p "$OS_DATA"; write_logging
  setsid nohup "$JAVA" -Xms64m -Xmx384m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlogback.configurationFile="$OS_HOME/logback.xml" -cp "$OS_LIB/*" org.gaul.s3proxy.Main \
    --properties <(properties) >>"$LOG_DIR/objectstore.log" 2>&1 &
  echo $! >"$PID_FILE"
  wait_for objectstore 60 curl -s -o /dev/null "$ENDPOINT/"
  s3 create $S3_BUCKETS
  log "objectstore: running on $ENDPOINT, buckets: $(s3 list)"
}

status() {
  if pid_alive "$PID_FILE" && port_open "$S3_PORT"; then
    credentials
    log "objectstore: UP   $ENDPOINT (S3Proxy, data in $OS_DATA) buckets: $(s3 list)"
  else
    log "objectstore: DOWN (port $S3_PORT)"; return 1
  fi
}

case "${1:-}" in
  start) start ;; stop) stop_pidfile objectstore "$PID_FILE" ;; status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
