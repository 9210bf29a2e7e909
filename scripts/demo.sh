#!/usr/bin/env bash
# The demo, on the local stack (`make up` first; `make demo` does both): bootstrap the schema,
# produce storefront traffic to Kafka, ingest it exactly once with rollups after each batch,
# then print the lab's dashboard queries and the dead letters. It runs on the stack's Citus
# cluster, or on plain PostgreSQL with DEMO_ENV=local or where the stack has no Citus. The
# terminal shows the jobs' own lines; everything, the JVM's and librdkafka's chatter included,
# goes to .stack/logs/demo.log.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
export PYTHONUNBUFFERED=1

env="${DEMO_ENV:-local-citus}"
if [ "$env" = local-citus ] && [ -f .stack/citus.unavailable ]; then
  echo "(no Citus cluster in this stack: $(cat .stack/citus.unavailable); the demo runs on plain PostgreSQL)"
  env=local
fi
log=.stack/logs/demo.log
mkdir -p "$(dirname "$log")"
: >"$log"

# Lines from the JVM's logging bootstrap, librdkafka's start-up and pyspark's accumulator
# server closing with the session: on the terminal they only hide the jobs' own lines.
NOISE='^SLF4J: |^%[0-9]+\|[0-9.]+\|[A-Z_]+\|rdkafka|^WARNING: Using incubator modules'
without_tracebacks_between_rules() {
  awk '
    inblock { if ($0 ~ /^-+$/) inblock = 0; next }
    pending != "" {
      if ($0 ~ /^Exception occurred during processing of request/) { inblock = 1; pending = ""; next }
      print pending; pending = ""
    }
    /^-+$/ { pending = $0; next }
    { print; fflush() }
    END { if (pending != "") print pending }
  '
}
# run CMD...: CMD's whole output into the log, its own lines on the terminal; CMD's status
run() {
  set +e
  "$@" 2>&1 | tee -a "$log" | grep --line-buffered -Ev "$NOISE" | without_tracebacks_between_rules
  local status=${PIPESTATUS[0]}
  set -e
  return "$status"
}

echo "== 1. bootstrap on $env: migrations, rollup functions, pg_cron schedules"
run "$bin/clickstream-bootstrap" --env "$env" --log-level WARNING
echo "== 2. smoke path: the ingest on a small fresh topic, Kafka -> Spark -> events, s3a:// checkpoint"
run "$bin/clickstream-smoke" --env "$env" --messages 1000 --log-level WARNING
echo "== 3. produce 100,000 storefront events (skewed tenants, sessions, 2% late)"
run "$bin/clickstream-produce" --env "$env" --count 100000 --seed 7 --late-share 0.02 --no-progress
echo "== 4. ingest them (available-now), rolling up after each batch"
run "$bin/clickstream-ingest" --env "$env" --available-now --set ingest.rollup_after_batch=true \
  --set kafka.max_offsets_per_trigger=50000
echo "== 5. the lab's dashboard queries, on the rollups"
run "$bin/clickstream-query" --env "$env" run --all
echo "== 6. dead letters"
run "$bin/clickstream-dead-letters" --env "$env" list --limit 5 --log-level WARNING
echo "== 7. the live dashboard: $bin/clickstream-dashboard --env $env,"
echo "      then open http://127.0.0.1:8050/ (the whole log of this demo: $log)"
