#!/usr/bin/env bash
# A Spark standalone cluster on loopback, on demand (not part of `stack.sh up`): a master on
# $SPARK_MASTER_PORT and $SPARK_WORKERS workers (one core, $SPARK_WORKER_MEMORY each), all from
# the venv's pyspark distribution. Jobs reach it with `spark-submit --master spark://127.0.0.1:57077`;
# each worker starts the application's executor JVM, whose Python workers run the venv's Python.
# Usage: spark-cluster.sh start|stop|status
source "$(dirname "$0")/common.sh"

SPARK_MASTER_PORT="${SPARK_MASTER_PORT:-57077}"
SPARK_MASTER_UI_PORT="${SPARK_MASTER_UI_PORT:-58091}"
SPARK_WORKERS="${SPARK_WORKERS:-2}"
SPARK_WORKER_MEMORY="${SPARK_WORKER_MEMORY:-2g}"
CLUSTER_DIR="$STACK_DIR/spark-cluster"
MASTER_URL="spark://127.0.0.1:$SPARK_MASTER_PORT"

spark_home() {
  "$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' \
    || die "spark-cluster: pyspark is not installed in $VENV (run scripts/setup.sh)"
}

# A worker deletes the folders (jars, logs) of applications that ended over an hour ago: each
# holds about 0.5 GB, and a test run starts several.
WORKER_CLEANUP="-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.interval=600 -Dspark.worker.cleanup.appDataTtl=3600"

# daemon NAME CLASS ARGS...: run a Spark daemon class in the background with a pid file.
daemon() {
  local name="$1" class="$2"; shift 2
  local pid_file="$RUN_DIR/spark-$name.pid"
  if pid_alive "$pid_file"; then log "spark-cluster: $name already running"; return 0; fi
  SPARK_LOCAL_IP=127.0.0.1 SPARK_HOME="$SPARK_HOME" PYSPARK_PYTHON="$VENV/bin/python" \
    SPARK_LOG_DIR="$LOG_DIR" SPARK_WORKER_DIR="$CLUSTER_DIR/$name" \
    SPARK_WORKER_OPTS="$WORKER_CLEANUP" \
    nohup "$SPARK_HOME/bin/spark-class" "$class" "$@" >"$LOG_DIR/spark-$name.log" 2>&1 &
  echo $! >"$pid_file"
}

workers_registered() {
  "$VENV/bin/python" - "$SPARK_MASTER_UI_PORT" "$SPARK_WORKERS" <<'PY'
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=2))
alive = [w for w in state["workers"] if w["state"] == "ALIVE"]
sys.exit(0 if len(alive) >= int(sys.argv[2]) else 1)
PY
}

start() {
  SPARK_HOME="$(spark_home)"
  mkdir -p "$CLUSTER_DIR"
  daemon master org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$SPARK_MASTER_PORT" --webui-port "$SPARK_MASTER_UI_PORT"
  wait_for "spark master" 60 port_open "$SPARK_MASTER_PORT"
  local i
  for ((i = 1; i <= SPARK_WORKERS; i++)); do
    mkdir -p "$CLUSTER_DIR/worker-$i"
    daemon "worker-$i" org.apache.spark.deploy.worker.Worker "$MASTER_URL" \
      --host 127.0.0.1 --cores 1 --memory "$SPARK_WORKER_MEMORY" --webui-port 0 \
      --work-dir "$CLUSTER_DIR/worker-$i"
  done
  wait_for "$SPARK_WORKERS spark workers" 90 workers_registered
  log "spark-cluster: master $MASTER_URL with $SPARK_WORKERS workers (UI http://127.0.0.1:$SPARK_MASTER_UI_PORT)"
}

stop() {
  local i
  for ((i = SPARK_WORKERS; i >= 1; i--)); do stop_pidfile "spark worker-$i" "$RUN_DIR/spark-worker-$i.pid"; done
  stop_pidfile "spark master" "$RUN_DIR/spark-master.pid"
}

status() {
  if pid_alive "$RUN_DIR/spark-master.pid" && workers_registered; then
    log "spark-cluster: running, master $MASTER_URL, $SPARK_WORKERS workers"
  else
    log "spark-cluster: not running (start it with make up-spark-cluster)"; return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
