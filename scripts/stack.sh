#!/usr/bin/env bash
# The local stack: up | down | status. Each service keeps its data in .stack/ and listens on
# 127.0.0.1 only; `up` is idempotent (a running service is left as it is and says so).
source "$(dirname "$0")/stack/common.sh"

SERVICES=(postgres citus kafka objectstore keyvault)
here="$(dirname "$0")/stack"

case "${1:-}" in
  up)
    for s in "${SERVICES[@]}"; do "$here/$s.sh" start; done ;;
  down)
    # the on-demand Spark cluster too, when it was started
    [ -f "$RUN_DIR/spark-master.pid" ] && "$here/spark-cluster.sh" stop
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do "$here/${SERVICES[$i]}.sh" stop; done ;;
  status)
    rc=0
    for s in "${SERVICES[@]}"; do "$here/$s.sh" status || rc=1; done
    log "secrets for local runs: $SECRETS_FILE (mode 600, git-ignored)"
    exit $rc ;;
  *) die "usage: $0 up|down|status" ;;
esac
