#!/usr/bin/env bash
# An S3-compatible object store (moto's server, from PyPI) on $S3_PORT for s3a:// checkpoints
# and the Delta lake. Buckets in $S3_BUCKETS are created at start.
# moto keeps objects in memory: a restart of this process empties the buckets.
# Usage: objectstore.sh start|stop|status
source "$(dirname "$0")/common.sh"

PID_FILE="$RUN_DIR/objectstore.pid"
S3_BUCKETS="${S3_BUCKETS:-checkpoints lake}"
ENDPOINT="http://127.0.0.1:$S3_PORT"

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

start() {
  credentials
  if pid_alive "$PID_FILE" && port_open "$S3_PORT"; then
    log "objectstore: already running on $ENDPOINT (nothing changed)"
    return 0
  fi
  port_open "$S3_PORT" && die "port $S3_PORT is taken by another process"
  [ -x "$VENV/bin/moto_server" ] || die "moto_server missing in $VENV (run scripts/setup.sh)"
  setsid nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$LOG_DIR/objectstore.log" 2>&1 &
  echo $! >"$PID_FILE"
  wait_for objectstore 30 curl -sf "$ENDPOINT/moto-api/"
  s3 create $S3_BUCKETS
  log "objectstore: running on $ENDPOINT, buckets: $(s3 list)"
}

status() {
  if pid_alive "$PID_FILE" && port_open "$S3_PORT"; then
    credentials
    log "objectstore: UP   $ENDPOINT (moto server, in memory) buckets: $(s3 list)"
  else
    log "objectstore: DOWN (port $S3_PORT)"; return 1
  fi
}

case "${1:-}" in
  start) start ;; stop) stop_pidfile objectstore "$PID_FILE" ;; status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
