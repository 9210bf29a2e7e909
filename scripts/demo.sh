#!/usr/bin/env bash
# The demo, on the local stack (`make up` first; `make demo` does both):
# bootstrap the schema, produce storefront traffic to Kafka, ingest it exactly once with
# rollups after each batch, then print the lab's dashboard queries and the dead letters.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
export PYTHONUNBUFFERED=1

echo "== 1. bootstrap: migrations, rollup functions, pg_cron schedules"
"$bin/clickstream-bootstrap" --env local --log-level WARNING
echo "== 2. smoke path: the ingest on a small fresh topic, Kafka -> Spark -> events, s3a:// checkpoint"
"$bin/clickstream-smoke" --env local --messages 1000 --log-level WARNING
echo "== 3. produce 100,000 storefront events (skewed tenants, sessions, 2% late)"
"$bin/clickstream-produce" --env local --count 100000 --seed 7 --late-share 0.02 --no-progress
echo "== 4. ingest them (available-now), rolling up after each batch"
"$bin/clickstream-ingest" --env local --available-now --set ingest.rollup_after_batch=true \
  --set kafka.max_offsets_per_trigger=50000
echo "== 5. the lab's dashboard queries, on the rollups"
"$bin/clickstream-query" --env local run --all
echo "== 6. dead letters"
"$bin/clickstream-dead-letters" --env local list --limit 5 --log-level WARNING
echo "== 7. the live dashboard: make dashboard (or $bin/clickstream-dashboard --env local),"
echo "      then open http://127.0.0.1:8050/"
