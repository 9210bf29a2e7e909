"""Freshness: the producer at a steady rate while the ingest job runs (default trigger, rollups
after each batch): per event, Kafka timestamp to visible in `events` and counted in
`rollup_events_5min`; then a sustained rate and a one-message micro-batch's fixed cost."""

from __future__ import annotations

import argparse
import bisect
import statistics
import time
import uuid
from typing import Any

from benchmarks.common import KeptQuery, Watch, delete_checkpoint, ingest_config
from benchmarks.harness import Scenario, Target, percentile, say, scratch_db
from clickstream_pipeline.core.spark import build_spark
from clickstream_pipeline.ingest.stream import start_ingest
from clickstream_pipeline.traffic.generator import storefront_events
from clickstream_pipeline.traffic.producer import SendOptions, send_events
from clickstream_pipeline.warehouse.database import fetch
from devkit.stack import fresh_topic, secrets_for
from devkit.waits import wait_until

# each event with its batch's commit (the driver's clock after every task committed: an upper
# bound of when it became visible) and `ingested_at` (the COPY transaction's start)
EVENTS = """SELECT e.event_id, extract(epoch FROM e.event_time),
                   extract(epoch FROM e.ingested_at), extract(epoch FROM b.committed_at)
            FROM events e JOIN clickstream_ingest_batches b
              ON b.query_name = %s
             AND e.kafka_offset BETWEEN
                 (b.offsets -> (e.kafka_topic || '/' || e.kafka_partition) ->> 0)::bigint
             AND (b.offsets -> (e.kafka_topic || '/' || e.kafka_partition) ->> 1)::bigint"""
ROLLUP = "SELECT last_aggregated_id FROM rollups WHERE name = 'rollup_events_5min'"
# the batch records on one open connection: polled every 50 ms, neither a connection nor
# count(*) over events (every shard on Citus) may load the server being measured
PROGRESS = """SELECT coalesce(sum(rows_written), 0), max(events_through_id)
              FROM clickstream_ingest_batches WHERE query_name = %s"""
GOALS = {  # target: (bound, label), each a figure <= its bound
    "events_p95_le_0_5s": (0.5, "p95 <= 0.5 s"),
    "rollup_p95_le_1s": (1.0, "p95 <= 1 s"),
    "sustained_p95_le_1s": (1.0, "p95 <= 1 s"),
    "sustained_not_growing": (1.0, "p50 grows <= 1 s"),
    "fixed_cost_le_0_15s": (0.15, "<= 0.15 s"),
}


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_s": percentile(values, 50),
        "p95_s": percentile(values, 95),
        "max_s": max(values) if values else float("nan"),
    }


def quantiles(values: list[float]) -> list[float]:
    """The delays' distribution for the chart's CDF: percentiles 0..100, not the samples."""
    return [percentile(values, q) for q in range(101)] if values else []


def trigger_phases(progress: list[Any]) -> dict[str, float]:
    """Median milliseconds of each phase of the triggers that read rows (Spark's durationMs)."""
    busy = [p["durationMs"] for p in progress if p.get("numInputRows")]
    phases = sorted({k for d in busy for k in d})
    return {k: statistics.median(d.get(k, 0) for d in busy) for k in phases} if busy else {}


def delays(
    rows: list[Any], t_from: float, t_to: float, changes: list[tuple[float, int]]
) -> dict[str, Any]:
    """Delays of the events stamped in [t_from, t_to): to visible, and to counted in the rollup."""
    visible_tx, visible_commit, rollup = [], [], []
    counted = [last for _, last in changes]
    for event_id, event_time, ingested_at, committed_at in rows:
        t = float(event_time)
        if not t_from <= t < t_to:
            continue
        visible_tx.append(float(ingested_at) - t)
        visible_commit.append(float(committed_at) - t)
        if (i := bisect.bisect_left(counted, int(event_id))) < len(changes):
            rollup.append(changes[i][0] - t)
    half = (t_from + t_to) / 2
    early = [float(c) - float(t) for _, t, _, c in rows if t_from <= float(t) < half]
    late = [float(c) - float(t) for _, t, _, c in rows if half <= float(t) < t_to]
    return {
        "events": len(visible_tx),
        "visible_in_events_ingested_at": summary(visible_tx),
        "visible_in_events_batch_commit": summary(visible_commit),
        "counted_in_rollup_5min": summary(rollup),
        "p50_first_half_s": percentile(early, 50),
        "p50_second_half_s": percentile(late, 50),
        "visible_delay_quantiles_s": quantiles(visible_commit),
        "rollup_delay_quantiles_s": quantiles(rollup),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    kafka, name = args.kafka, f"bench-fresh-{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {"rate_msg_per_s": args.rate, "duration_s": args.duration}
    with (
        fresh_topic(kafka, "bench-fresh") as topic,
        scratch_db(args.secrets, "bench_fresh") as db,
        Watch(db, ROLLUP) as rollup,
        KeptQuery(db, PROGRESS, (name,)) as progress,
    ):
        secrets = secrets_for(args.secrets, db)
        trigger = {"trigger_interval": args.trigger} if args.trigger else {}
        cfg = ingest_config(args.cfg, topic, name, rollup_after_batch=True, **trigger)
        results["trigger_interval"] = cfg.ingest.trigger_interval
        results["rollups"] = "background" if cfg.ingest.rollup_in_background else "in the batch"
        windows: dict[str, tuple[float, float]] = {}
        sent = 0
        poll_s = 0.25 if args.quick else None  # seconds-long quick windows: caught up sooner

        def produce(rate: float, seed: int, **amount: Any) -> None:
            nonlocal sent
            options = SendOptions(topic=topic, rate=rate, progress=False, **amount)
            stats = send_events(kafka, storefront_events(seed=seed), options)
            if not stats.ok:
                raise RuntimeError(stats.summary(topic))
            say(stats.summary(topic))
            sent += int(stats.acked)

        def caught_up() -> bool:
            count, top = progress()
            say(f"waiting: {count:,}/{sent:,} rows in events")
            return bool(count == sent and rollup.changes and rollup.changes[-1][1] >= (top or 0))

        spark = build_spark(cfg, secrets)
        try:
            query = start_ingest(spark, cfg, secrets)
            wait_until(lambda: query.lastProgress is not None, 180, "the first (empty) trigger")
            say(f"ingest running (trigger {cfg.ingest.trigger_interval}, rollups after batch)")
            produce(args.rate, 2, count=int(args.rate * args.warm_up))  # starts the Python workers
            wait_until(caught_up, 180, "the warm-up events in the rollup", every_s=poll_s or 1)
            for window, rate, seconds, seed in (
                ("steady", args.rate, args.duration, 1),
                ("sustained", args.sustained_rate, args.sustained_duration, 3),
            ):
                say(f"{window}: producing {rate:,.0f} msg/s for {seconds:.0f}s")
                t_from = time.time()
                produce(rate, seed, duration_s=seconds)
                windows[window] = (t_from, time.time())
                what = "every event in events and in the rollup"
                wait_until(caught_up, 300, what, every_s=poll_s or 2)
                results[f"{window}_trigger_phases_ms_median"] = trigger_phases(query.recentProgress)
            say(f"fixed cost: {args.single} batches of one message")
            t_from = time.time()
            for i in range(args.single):
                produce(0, 10 + i, count=1)
                wait_until(caught_up, 60, "the message in events and in the rollup", every_s=0.05)
                time.sleep(0.5)
            windows["single"] = (t_from, time.time())
            phases = [p["durationMs"] for p in query.recentProgress if p["numInputRows"] == 1]
            query.stop()
            delete_checkpoint(spark, cfg.checkpoint_location)
        finally:
            spark.stop()
        rows = fetch(db, EVENTS, (name,))
    steady, sustained, single = (delays(rows, *windows[w], rollup.changes) for w in windows)
    results |= steady  # the steady window's at the top level
    results["trigger_phases_ms_median"] = results.pop("steady_trigger_phases_ms_median")
    del sustained["visible_delay_quantiles_s"], sustained["rollup_delay_quantiles_s"]
    results["sustained"] = sustained | {
        "rate_msg_per_s": args.sustained_rate,
        "duration_s": args.sustained_duration,
        "trigger_phases_ms_median": results.pop("sustained_trigger_phases_ms_median"),
        "lag_growing": sustained["p50_second_half_s"] > sustained["p50_first_half_s"] + 1,
    }
    results["fixed_cost"] = {
        "batches": len(phases),
        "trigger_ms_median": statistics.median(p["triggerExecution"] for p in phases),
        "phases_ms_median": {k: statistics.median(p.get(k, 0) for p in phases) for k in phases[0]},
        "kafka_to_events_p50_s": single["visible_in_events_batch_commit"]["p50_s"],
    }
    return results


def targets(f: dict[str, Any]) -> list[Target]:
    sus = f["sustained"]
    figures = {
        "events_p95_le_0_5s": f["visible_in_events_batch_commit"]["p95_s"],
        "rollup_p95_le_1s": f["counted_in_rollup_5min"]["p95_s"],
        "sustained_p95_le_1s": sus["visible_in_events_batch_commit"]["p95_s"],
        "sustained_not_growing": sus["p50_second_half_s"] - sus["p50_first_half_s"],
        "fixed_cost_le_0_15s": f["fixed_cost"]["trigger_ms_median"] / 1000,
    }
    return [Target(name, figures[name], "<=", *goal) for name, goal in GOALS.items()]


def derived(f: dict[str, Any]) -> dict[str, Any]:
    """The fixed cost in seconds, and the headline's trigger and verdict."""
    met = all(f["targets"][t]["met"] for t in ("events_p95_le_0_5s", "rollup_p95_le_1s"))
    return {
        "fixed_s": f["fixed_cost"]["trigger_ms_median"] / 1000,
        "trigger": f["trigger_interval"].replace(" second", " s"),
        "met": "met" if met else "missed",
        "v": f["visible_in_events_batch_commit"],
        "r": f["counted_in_rollup_5min"],
        "s": f["sustained"],
        "phases": f["fixed_cost"]["phases_ms_median"],
    }


SCENARIO = Scenario(
    "freshness",
    __doc__ or "",
    run,
    # --rate, --sustained-rate: messages/s; --duration, --warm-up: seconds; --single: batches of
    # one message; --trigger: the ingest's trigger interval (default: the config's)
    flags={
        "trigger": str,
        "rate": 2000.0,
        "duration": 60.0,
        "sustained_rate": 20000.0,
        "sustained_duration": 60.0,
        "single": 10,
        "warm_up": 5.0,
    },
    quick={"duration": 3.0, "sustained_duration": 2.0, "single": 3, "warm_up": 1.0},
    targets=targets,
    rows=(
        "freshness, {rate_msg_per_s:,.0f} msg/s for {duration_s:.0f} s, trigger {trigger_interval}"
        " | Kafka -> `events`: p50 {v[p50_s]:.2f} s, p95 {v[p95_s]:.2f} s, max {v[max_s]:.2f} s"
        " | | | {targets:events_p95_le_0_5s}",
        "| Kafka -> `rollup_events_5min`: p50 {r[p50_s]:.2f} s, p95 {r[p95_s]:.2f} s, max"
        " {r[max_s]:.2f} s | | | {targets:rollup_p95_le_1s}",
        "sustained {s[rate_msg_per_s]:,.0f} msg/s for {s[duration_s]:.0f} s | Kafka -> `events`"
        " p50 {s[visible_in_events_batch_commit][p50_s]:.2f} s, p95"
        " {s[visible_in_events_batch_commit][p95_s]:.2f} s; p50 first half"
        " {s[p50_first_half_s]:.2f} s, second half {s[p50_second_half_s]:.2f} s"
        " | | | {targets:sustained_p95_le_1s; sustained_not_growing}",
        "fixed cost of a one-message micro-batch (median of {fixed_cost[batches]})"
        " | {fixed_s:.2f} s (foreachBatch {phases[addBatch]:.0f} ms, offsets log"
        " {phases[walCommit]:.0f} ms, commit {phases[commitOffsets]:.0f} ms)"
        " | | | {targets:fixed_cost_le_0_15s}",
    ),
    derived=derived,
    on_both=True,
    headline="freshness, {rate_msg_per_s:,.0f} msg/s, {trigger} trigger | p95 {v[p95_s]:.2f} s"
    " to `events`, {r[p95_s]:.2f} s to the 5-minute rollup | | target p95 <= 0.5 s / 1 s: {met}",
)

if __name__ == "__main__":
    SCENARIO.main()
