"""End to end: N lab messages on a fresh topic, the ingest job (available-now) from an empty
checkpoint into a scratch database, timed from before its Spark session is built to the last
batch's commit, next to one-stream `psql \\copy` of the same rows (docs/performance.md)."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.harness import Scenario, Target, rate, say, scratch_db
from clickstream_pipeline.core.schema import EVENT_COLUMNS
from clickstream_pipeline.core.spark import build_spark
from clickstream_pipeline.ingest.stream import start_ingest
from clickstream_pipeline.warehouse.database import ConnectionParams, connect, fetch
from devkit.db import execute
from devkit.stack import fresh_topic, secrets_for

BATCHES = """SELECT rows_read, seconds, rows_per_second, extract(epoch FROM committed_at - %s)
             FROM clickstream_ingest_batches WHERE query_name = %s ORDER BY batch_id"""
PROGRESS = ">= 0.25x (progress)"  # a step on the way to the target
STEADY = ">= 0.6x"  # the batches after the first, against `\\copy`
EXPORT = f"COPY (SELECT {', '.join(EVENT_COLUMNS)} FROM events) TO STDOUT (FORMAT csv)"  # noqa: S608


def copy_baseline(db: ConnectionParams, n: int) -> dict[str, Any]:
    """Export the ingested rows as CSV, truncate, `\\copy` them back with one stream."""
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as folder:
        path = Path(folder) / "events.csv"
        with contextlib.closing(connect(db)) as conn, conn.cursor() as cur, path.open("w") as out:
            cur.copy_expert(EXPORT, out)
        common.truncate(db, "events")
        execute(db, "CHECKPOINT")
        with common.DbCpuMeter(db) as meter:
            seconds = common.psql_copy(db, EVENT_COLUMNS, [path])
    common.expect_rows(db, n, "\\copy")
    say(f"psql \\copy, 1 stream: {n / seconds:,.0f} rows/s")
    own, total = meter.reading.own_s / n * 1e6, meter.reading.total_s / n * 1e6
    return rate(n, seconds, db_cpu_us_per_row_own=own, db_cpu_us_per_row=total)


def breakdown(ingest: dict[str, Any], n: int) -> dict[str, float]:
    """Where the wall time went: session, warm-up, steady batches, between batches (they add up)."""
    seconds, rates = ingest["batch_seconds"], ingest["batch_rows_per_s"]
    phases = ingest.get("trigger_phases_s", {})
    first, other = (seconds[0], sum(seconds[1:])) if seconds else (0.0, 0.0)
    session = ingest.get("session_s", 0.0)
    outside = ingest["wall_seconds"] - session - sum(seconds)
    first_rows = rates[0] * first if seconds else 0
    steady = (n - first_rows) / other if other else 0.0
    # the first batch's time beyond what its rows take at the later batches' rate
    warm_up = first - first_rows / steady if steady else 0.0
    return {
        "session_s": round(session, 3),
        "first_batch_s": round(first, 3),
        "warm_up_s": round(max(warm_up, 0.0), 3),
        "other_batches_s": round(other, 3),
        "steady_rows_per_s": steady,
        "outside_batches_s": round(outside, 3),
        "outside_per_batch_s": round(outside / max(len(seconds), 1), 3),
        "start_s": ingest.get("start_to_first_trigger_s", 0.0),
        "checkpoint_s": round(sum(phases.get(k, 0.0) for k in ("walCommit", "commitOffsets")), 3),
    }


def trigger_phase_totals(progress: list[Any]) -> dict[str, float]:
    """Seconds per phase of Spark's triggers (durationMs), summed over the run."""
    totals: dict[str, float] = {}
    for p in progress:
        for phase, ms in (p["durationMs"] or {}).items():
            totals[phase] = totals.get(phase, 0.0) + ms / 1000
    return {k: round(v, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def run(args: argparse.Namespace) -> dict[str, Any]:
    n, kafka = args.messages, args.kafka
    per_batch = args.max_offsets_per_trigger or args.cfg.kafka.max_offsets_per_trigger
    results: dict[str, Any] = {"messages": n, "max_offsets_per_trigger": per_batch}
    with fresh_topic(kafka, "bench-e2e") as topic, scratch_db(args.secrets, "bench_e2e") as db:
        results["producer_load_msg_per_s"] = common.load_topic(kafka, topic, n)
        secrets, name = secrets_for(args.secrets, db), f"bench-e2e-{uuid.uuid4().hex[:8]}"
        cfg = common.ingest_config(
            args.cfg, topic, name, trigger="available_now", max_offsets_per_trigger=per_batch
        )
        say(f"ingest job: available-now, {f'{per_batch:,}' if per_batch else 'no limit'} a batch")
        started_at = datetime.now(UTC)  # the job's start: it builds its session first
        spark = build_spark(cfg, secrets)
        query_started_at = datetime.now(UTC)
        session_s = (query_started_at - started_at).total_seconds()
        say(f"Spark session built in {session_s:.1f}s")
        try:
            with (
                common.PeakMemory(common.jvm_pid(spark), "pyspark") as memory,
                common.DbCpuMeter(db) as meter,
            ):
                query = start_ingest(spark, cfg, secrets)
                while query.isActive:
                    query.awaitTermination(10)
                    say(f"ingest running: {len(query.recentProgress)} triggers so far")
                if query.exception() is not None:
                    raise RuntimeError(f"ingest failed: {query.exception()}")
                progress = list(query.recentProgress)
            common.delete_checkpoint(spark, cfg.checkpoint_location)
        finally:
            spark.stop()
        batches = fetch(db, BATCHES, (started_at, name))
        common.expect_rows(db, n, "ingest")
        wall, rates = float(batches[-1][3]), sorted(float(b[2]) for b in batches if b[0])
        # the first batch may be a query of its own (a backlog's small first batch): its start
        # from the batch table, not from the progress of the query that ran the rest
        first_start = float(batches[0][3]) - float(batches[0][1]) - session_s
        results["ingest"] = {
            "rows": n,
            "wall_seconds": round(wall, 3),
            "rows_per_s": n / wall,
            "session_s": round(session_s, 3),
            "batches": len(batches),
            "batch_rows_per_s": [round(float(b[2])) for b in batches if b[0]],
            "batch_seconds": [round(float(b[1]), 3) for b in batches],
            "batch_rows_per_s_median": rates[len(rates) // 2] if rates else 0.0,
            "db_cpu_s": round(meter.reading.total_s, 3),
            "db_cpu_us_per_row_own": meter.reading.own_s / n * 1e6,
            "db_cpu_us_per_row": meter.reading.total_s / n * 1e6,
            "driver_jvm_peak_mib": memory.root_peak_mib,
            "python_worker_peak_mib": max(memory.marked_peak_mib.values(), default=0.0),
            "python_workers_peak_total_mib": memory.marked_total_peak_mib,
            "python_worker_processes": len(memory.marked_peak_mib),
            "trigger_phases_s": trigger_phase_totals(progress),
            "start_to_first_trigger_s": round(max(first_start, 0.0), 3),
        }
        results["copy_1"] = copy_baseline(db, n)
    ratio = results["ingest"]["rows_per_s"] / results["copy_1"]["rows_per_s"]
    results["ratio_ingest_over_copy_1"] = ratio
    results["breakdown"] = breakdown(results["ingest"], n)
    steady = results["breakdown"]["steady_rows_per_s"]
    results["ratio_steady_over_copy_1"] = steady / results["copy_1"]["rows_per_s"]
    return results


SCENARIO = Scenario(
    "end_to_end",
    __doc__ or "",
    run,
    flags={"messages": 2_000_000, "max_offsets_per_trigger": int},  # a batch (default: the job's)
    quick={"messages": 40_000, "max_offsets_per_trigger": 10_000},
    targets=lambda f: [
        Target("e2e_ge_40pct_of_copy_1", f["ratio_ingest_over_copy_1"], ">=", 0.4, ">= 0.4x"),
        Target("e2e_ge_25pct_of_copy_1", f["ratio_ingest_over_copy_1"], ">=", 0.25, PROGRESS),
        Target("steady_ge_60pct_of_copy_1", f["ratio_steady_over_copy_1"], ">=", 0.6, STEADY),
    ],
    rows=(
        "end to end, {messages:,} messages | {ingest[rows_per_s]:,.0f} rows/s"
        " ({ingest[wall_seconds]:.0f} s, {ingest[batches]} batches, median batch"
        " {ingest[batch_rows_per_s_median]:,.0f} rows/s) | `\\copy` 1 stream"
        " {copy_1[rows_per_s]:,.0f} rows/s | {ratio_ingest_over_copy_1:.2f}x"
        " | {targets:e2e_ge_40pct_of_copy_1; e2e_ge_25pct_of_copy_1}",
        "end to end, peak memory | driver JVM {ingest[driver_jvm_peak_mib]:,.0f} MiB, Python"
        " worker {ingest[python_worker_peak_mib]:,.0f} MiB (all workers"
        " {ingest[python_workers_peak_total_mib]:,.0f} MiB)",
        "end to end, where the time went | Spark session {b[session_s]:.1f} s; first batch"
        " {b[first_batch_s]:.1f} s (warm-up {b[warm_up_s]:.1f} s); other batches"
        " {b[other_batches_s]:.1f} s at {b[steady_rows_per_s]:,.0f} rows/s"
        " ({ratio_steady_over_copy_1:.2f}x `\\copy`, {targets:steady_ge_60pct_of_copy_1});"
        " outside batches {b[outside_batches_s]:.1f} s ({b[outside_per_batch_s]:.2f} s a batch;"
        " query start to the first batch {b[start_s]:.1f} s, checkpoint and offset commits"
        " {b[checkpoint_s]:.1f} s)",
    ),
    derived=lambda f: {"b": f["breakdown"]},
    on_both=True,
    headline="end to end, {messages:M} messages Kafka -> `events`"
    " | {ingest[rows_per_s]:,.0f} rows/s ({ingest[wall_seconds]:.0f} s)"
    " | `psql \\copy` {copy_1[rows_per_s]:,.0f} rows/s | {ratio_ingest_over_copy_1:.2f}x",
)

if __name__ == "__main__":
    SCENARIO.main()
