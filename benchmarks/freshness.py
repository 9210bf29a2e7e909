"""Freshness: the producer at a steady rate while the ingest job runs with its default trigger
and rollups after each batch; per event, the delay from its Kafka timestamp to (i) visible in
`events` and (ii) counted in `rollup_events_5min`.

The producer stamps `event_time` with its clock when it sends (no late events), the same moment
as the record's Kafka CreateTime, so `event_time` stands for the Kafka timestamp here.
(i) is measured two ways: `ingested_at` (the COPY transaction's start) and the batch's
`committed_at` (driver clock after every task committed: an upper bound). (ii) comes from a
poller that reads `rollups.last_aggregated_id` for `rollup_events_5min` every 100 ms: an event
is counted once the committed window covers its `event_id`.

Run: `.venv/bin/python -m benchmarks.freshness [--rate 2000 --duration 60] [--quick]`.
"""

from __future__ import annotations

import argparse
import bisect
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import (
    add_env_argument,
    db_params,
    machine_facts,
    percentile,
    result_name,
    say,
    scratch_database,
    secrets_for,
    setup_env,
    write_result,
)
from benchmarks.ingest_support import delete_checkpoint, fresh_topic, ingest_config, wait_for
from clickstream_pipeline.database import ConnectionParams, connect, fetch
from clickstream_pipeline.generator import storefront_events
from clickstream_pipeline.ingest import start_ingest
from clickstream_pipeline.producer import SendOptions, send_events
from clickstream_pipeline.source import producer_config
from clickstream_pipeline.spark import build_spark


class RollupPoller(threading.Thread):
    """Records (wall time, last_aggregated_id) of the 5-minute rollup whenever it changes."""

    def __init__(self, db: ConnectionParams, every_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.db, self.every_s = db, every_s
        self.changes: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn = connect(self.db, "bench-freshness-poller")
        conn.autocommit = True
        last = -1
        try:
            with conn.cursor() as cur:
                while not self.stop.wait(self.every_s):
                    cur.execute(
                        "SELECT last_aggregated_id FROM rollups WHERE name = 'rollup_events_5min'"
                    )
                    (value,) = cur.fetchone()
                    now = time.time()
                    if value is not None and value != last:
                        self.changes.append((now, int(value)))
                        last = int(value)
        finally:
            conn.close()

    def counted_at(self, event_id: int) -> float | None:
        ids = [v for _, v in self.changes]
        i = bisect.bisect_left(ids, event_id)
        return self.changes[i][0] if i < len(self.changes) else None


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_s": percentile(values, 50),
        "p95_s": percentile(values, 95),
        "max_s": max(values) if values else float("nan"),
    }


def trigger_phases(progress: list[Any]) -> dict[str, float]:
    """Median milliseconds of each phase of the triggers that read rows (Spark's durationMs)."""
    busy = [p["durationMs"] for p in progress if p.get("numInputRows")]
    phases = sorted({k for d in busy for k in d})
    return {k: statistics.median(d.get(k, 0) for d in busy) for k in phases} if busy else {}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="messages/s")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of producing")
    parser.add_argument("--quick", action="store_true", help="20 s of producing")
    parser.add_argument("--out", type=Path, default=None)
    add_env_argument(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 20.0
    base_cfg, base_secrets = setup_env(args.env)
    results: dict[str, Any] = {
        "machine": machine_facts(),
        "rate_msg_per_s": args.rate,
        "duration_s": args.duration,
    }
    with (
        fresh_topic(base_cfg, base_secrets, "bench-fresh") as topic,
        scratch_database(db_params(base_secrets), "bench_fresh") as db,
    ):
        secrets = secrets_for(base_secrets, db)
        cfg = ingest_config(
            base_cfg, topic, f"bench-fresh-{uuid.uuid4().hex[:8]}", rollup_after_batch=True
        )
        results["trigger_interval"] = cfg.ingest.trigger_interval
        spark = build_spark(cfg, secrets)
        poller = RollupPoller(db)
        try:
            query = start_ingest(spark, cfg, secrets)
            wait_for(lambda: query.lastProgress is not None, 180, "the first (empty) trigger")
            say(f"ingest running (trigger {cfg.ingest.trigger_interval}, rollups after batch)")
            poller.start()
            conf = producer_config(cfg.kafka, secrets)
            # warm-up: the first batches start the Python workers; they are not measured
            warm = send_events(
                conf,
                storefront_events(seed=2),
                SendOptions(topic=topic, rate=args.rate, count=int(args.rate * 5), progress=False),
            )
            wait_for(
                lambda: bool(poller.changes) and poller.changes[-1][1] >= warm.acked,
                180,
                "the warm-up events in the rollup",
            )
            measured_from = time.time()
            say(
                f"warmed up ({warm.acked:,} events); producing {args.rate:,.0f} msg/s "
                f"for {args.duration:.0f}s"
            )
            stats = send_events(
                conf,
                storefront_events(seed=1),
                SendOptions(topic=topic, rate=args.rate, duration_s=args.duration, progress=False),
            )
            if not stats.ok:
                raise RuntimeError(stats.summary(topic))
            say(stats.summary(topic))

            def caught_up() -> bool:
                ((count, top),) = fetch(db, "SELECT count(*), max(event_id) FROM events")
                done = (
                    count == stats.acked + warm.acked
                    and poller.changes
                    and poller.changes[-1][1] >= top
                )
                say(f"waiting: {count:,}/{stats.acked + warm.acked:,} rows in events")
                return bool(done)

            wait_for(caught_up, 180, "every event in events and in the rollup", every_s=2)
            results["trigger_phases_ms_median"] = trigger_phases(query.recentProgress)
            say(f"where a trigger's time goes (median ms): {results['trigger_phases_ms_median']}")
            query.stop()
            delete_checkpoint(spark, cfg.checkpoint_location)
        finally:
            poller.stop.set()
            spark.stop()
        rows = fetch(
            db,
            """SELECT e.event_id, extract(epoch FROM e.event_time),
                      extract(epoch FROM e.ingested_at), extract(epoch FROM b.committed_at)
               FROM events e JOIN clickstream_ingest_batches b
                 ON b.query_name = %s
                AND e.kafka_offset BETWEEN
                    (b.offsets -> (e.kafka_topic || '/' || e.kafka_partition) ->> 0)::bigint
                AND (b.offsets -> (e.kafka_topic || '/' || e.kafka_partition) ->> 1)::bigint""",
            (cfg.ingest.query_name,),
        )
        batches = fetch(
            db,
            """SELECT count(*), avg(seconds), max(seconds) FROM clickstream_ingest_batches
               WHERE query_name = %s AND rows_read > 0""",
            (cfg.ingest.query_name,),
        )[0]
    visible_tx, visible_commit, rollup = [], [], []
    for event_id, event_time, ingested_at, committed_at in rows:
        t = float(event_time)
        if t < measured_from:
            continue
        visible_tx.append(float(ingested_at) - t)
        visible_commit.append(float(committed_at) - t)
        counted = poller.counted_at(int(event_id))
        if counted is not None:
            rollup.append(counted - t)
    results.update(
        {
            "events": len(visible_tx),
            "warm_up_events": warm.acked,
            "batches": int(batches[0]),
            "batch_seconds_mean": float(batches[1] or 0),
            "batch_seconds_max": float(batches[2] or 0),
            "visible_in_events_ingested_at": summary(visible_tx),
            "visible_in_events_batch_commit": summary(visible_commit),
            "counted_in_rollup_5min": summary(rollup),
            # a sample for the chart: every 10th event's rollup delay
            "rollup_delay_sample_s": [round(v, 3) for v in rollup[::10]],
            "visible_delay_sample_s": [round(v, 3) for v in visible_commit[::10]],
        }
    )
    p95 = results["counted_in_rollup_5min"]["p95_s"]
    results["targets"] = {"rollup_p95_le_5s": p95 <= 5.0}
    print()
    for key in ("visible_in_events_ingested_at", "visible_in_events_batch_commit"):
        s = results[key]
        print(f"{key:<34} p50 {s['p50_s']:.2f}s  p95 {s['p95_s']:.2f}s  max {s['max_s']:.2f}s")
    s = results["counted_in_rollup_5min"]
    verdict = "met" if p95 <= 5 else "MISSED"
    print(
        f"{'counted_in_rollup_5min':<34} p50 {s['p50_s']:.2f}s  p95 {s['p95_s']:.2f}s  "
        f"max {s['max_s']:.2f}s  (target p95 <= 5 s: {verdict})"
    )
    write_result(result_name("freshness", args.env), results, args.out)
    return results


if __name__ == "__main__":
    main()
