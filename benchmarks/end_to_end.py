"""End to end: N lab-format messages on a fresh topic, the ingest job (available-now) from an
empty checkpoint into a bootstrapped scratch database, next to one-stream `psql \\copy`.

Figures: wall time and rows/s from job start (before its Spark session is built, as a user's job
pays for it) to the last batch's commit, the session's build on its own line, per-batch rows/s (from
`clickstream_ingest_batches`), the database's CPU per row, peak memory of the driver JVM and the
Python workers; then the same rows exported as CSV and `\\copy`-ed back (one stream) into the
truncated `events`, rows/s and CPU per row, in the same run.

Run: `.venv/bin/python -m benchmarks.end_to_end [--messages 2000000] [--quick]`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from benchmarks.common import DbCpuMeter, PeakMemory, psql_copy
from benchmarks.harness import (
    Cells,
    Scenario,
    Target,
    db_params,
    millions,
    n0,
    say,
    scratch_database,
    setup_env,
    verdict,
)
from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.schema import EVENT_COLUMNS
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.core.spark import build_spark
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.ingest.stream import start_ingest
from clickstream_pipeline.traffic.generator import Event, encode_event, lab_uniform_events
from clickstream_pipeline.traffic.producer import SendOptions, send_messages
from clickstream_pipeline.warehouse.database import ConnectionParams, fetch
from devkit.db import execute
from devkit.stack import fresh_topic, secrets_for


def load_topic(
    cfg: Config,
    secrets: Secrets,
    topic: str,
    n: int,
    encode: Callable[[Event], bytes] = encode_event,
) -> float:
    """N lab-format messages (the lab's six fields, no key), pre-serialised; returns msg/s."""
    values = [(None, encode(e)) for e in itertools.islice(lab_uniform_events(1), n)]
    options = SendOptions(topic=topic, count=n, progress=False)
    stats = send_messages(producer_config(cfg.kafka, secrets), iter(values), options)
    if not stats.ok or stats.acked != n:
        raise RuntimeError(stats.summary(topic))
    say(stats.summary(topic))
    return n / stats.seconds


def ingest_config(cfg: Config, topic: str, query_name: str, **ingest: Any) -> Config:
    """The job's config reading `topic` as `query_name` (with `ingest` settings)."""
    most = ingest.pop("max_offsets_per_trigger", cfg.kafka.max_offsets_per_trigger)
    kafka = cfg.kafka.model_copy(update={"topics": [topic], "max_offsets_per_trigger": most})
    update = {"query_name": query_name, **ingest}
    return cfg.model_copy(update={"kafka": kafka, "ingest": cfg.ingest.model_copy(update=update)})


def delete_checkpoint(spark: SparkSession, location: str) -> None:
    """Remove the query's checkpoint (s3a:// or local) through Hadoop's file system."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(location)
    path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)


def jvm_pid(spark: SparkSession) -> int:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return int(jvm.java.lang.ProcessHandle.current().pid())


def copy_baseline(db: ConnectionParams, folder: Path, n: int) -> dict[str, Any]:
    """Export the ingested rows as CSV, truncate, `\\copy` them back with one stream."""
    path = folder / "events.csv"
    cols = ", ".join(EVENT_COLUMNS)
    export = f"\\copy (SELECT {cols} FROM events) to '{path}' with (format csv)"  # noqa: S608
    env = {**os.environ, **db.libpq_env()}
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", export], env=env, check=True)
    execute(db, "TRUNCATE events", "CHECKPOINT")
    say(f"psql \\copy, 1 stream: {n:,} rows")
    with DbCpuMeter(db) as meter:
        seconds = psql_copy(db, EVENT_COLUMNS, [path])
    written = int(fetch(db, "SELECT count(*) FROM events")[0][0])
    if written != n:
        raise RuntimeError(f"\\copy wrote {written} rows, expected {n}")
    result = {
        "rows": n,
        "seconds": round(seconds, 3),
        "rows_per_s": n / seconds,
        "db_cpu_us_per_row_own": meter.reading.own_s / n * 1e6,
        "db_cpu_us_per_row": meter.reading.total_s / n * 1e6,
    }
    say(f"psql \\copy, 1 stream: {n / seconds:,.0f} rows/s")
    return result


def breakdown(ingest: dict[str, Any], n: int) -> dict[str, float]:
    """Where the wall time went: the session's build, warm-up, steady batches, time between
    batches (the parts add up to the wall time)."""
    seconds = ingest["batch_seconds"]
    phases = ingest.get("trigger_phases_s", {})
    busy = [s for s, r in zip(seconds, ingest["batch_rows_per_s"], strict=True) if r > 1000]
    median = sorted(busy)[len(busy) // 2] if busy else 0.0
    first = seconds[0] if seconds else 0.0
    other = sum(seconds[1:])
    session = ingest.get("session_s", 0.0)
    outside = ingest["wall_seconds"] - session - sum(seconds)
    rows_after_first = n - (ingest["batch_rows_per_s"][0] * first if seconds else 0)
    return {
        "session_s": round(session, 3),
        "first_batch_s": round(first, 3),
        "warm_up_s": round(max(first - median, 0.0), 3),
        "other_batches_s": round(other, 3),
        "steady_rows_per_s": rows_after_first / other if other else 0.0,
        "outside_batches_s": round(outside, 3),
        "outside_per_batch_s": round(outside / max(len(seconds), 1), 3),
        "start_s": ingest.get("start_to_first_trigger_s", 0.0),
        "checkpoint_s": round(sum(phases.get(k, 0.0) for k in ("walCommit", "commitOffsets")), 3),
    }


def _progress_time(progress: Any) -> datetime:
    return datetime.fromisoformat(progress["timestamp"].replace("Z", "+00:00"))


def trigger_phase_totals(progress: list[Any]) -> dict[str, float]:
    """Seconds per phase of Spark's triggers (durationMs), summed over the run."""
    totals: dict[str, float] = {}
    for p in progress:
        for phase, ms in (p["durationMs"] or {}).items():
            totals[phase] = totals.get(phase, 0.0) + ms / 1000
    return {k: round(v, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def run(args: argparse.Namespace) -> dict[str, Any]:
    base_cfg, base_secrets = setup_env(args.env)
    if args.max_offsets_per_trigger is None:
        args.max_offsets_per_trigger = base_cfg.kafka.max_offsets_per_trigger
    n = args.messages
    results: dict[str, Any] = {
        "messages": n,
        "max_offsets_per_trigger": args.max_offsets_per_trigger,
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    try:
        with (
            fresh_topic(producer_config(base_cfg.kafka, base_secrets), "bench-e2e") as topic,
            scratch_database(db_params(base_secrets), "bench_e2e") as db,
        ):
            results["producer_load_msg_per_s"] = load_topic(base_cfg, base_secrets, topic, n)
            secrets = secrets_for(base_secrets, db)
            cfg = ingest_config(
                base_cfg,
                topic,
                f"bench-e2e-{uuid.uuid4().hex[:8]}",
                trigger="available_now",
                max_offsets_per_trigger=args.max_offsets_per_trigger,
            )
            per_batch = args.max_offsets_per_trigger
            limit = f"{per_batch:,}" if per_batch else "no limit"
            say(f"ingest job: available-now, {limit} messages a batch")
            started_at = datetime.now(UTC)  # the job's start: it builds its session first
            spark = build_spark(cfg, secrets)
            query_started_at = datetime.now(UTC)
            session_s = (query_started_at - started_at).total_seconds()
            say(f"Spark session built in {session_s:.1f}s")
            try:
                workers = PeakMemory(jvm_pid(spark), marked="pyspark")  # Python workers
                with workers as memory, DbCpuMeter(db) as meter:
                    query = start_ingest(spark, cfg, secrets)
                    while query.isActive:
                        query.awaitTermination(10)
                        done = fetch(
                            db,
                            "SELECT coalesce(sum(rows_read), 0) FROM clickstream_ingest_batches",
                        )[0][0]
                        rate = int(done) / (datetime.now(UTC) - started_at).total_seconds()
                        say(f"ingest: {int(done):,}/{n:,} rows committed ({rate:,.0f} rows/s)")
                    if query.exception() is not None:
                        raise RuntimeError(f"ingest failed: {query.exception()}")
                    progress = list(query.recentProgress)
                delete_checkpoint(spark, cfg.checkpoint_location)
            finally:
                spark.stop()
            batches = fetch(
                db,
                """SELECT batch_id, rows_read, rows_written, seconds, rows_per_second,
                          extract(epoch FROM committed_at - %s)
                   FROM clickstream_ingest_batches WHERE query_name = %s ORDER BY batch_id""",
                (started_at, cfg.ingest.query_name),
            )
            written = int(fetch(db, "SELECT count(*) FROM events")[0][0])
            if written != n:
                raise RuntimeError(f"ingest wrote {written} rows, expected {n}")
            wall = float(batches[-1][5])
            rates = [float(b[4]) for b in batches if b[1]]
            results["ingest"] = {
                "rows": written,
                "wall_seconds": round(wall, 3),
                "rows_per_s": n / wall,
                "session_s": round(session_s, 3),
                "batches": len(batches),
                "batch_rows_per_s": [round(r) for r in rates],
                "batch_seconds": [round(float(b[3]), 3) for b in batches],
                "batch_rows_per_s_median": sorted(rates)[len(rates) // 2] if rates else 0.0,
                "db_cpu_s": round(meter.reading.total_s, 3),
                "db_cpu_us_per_row_own": meter.reading.own_s / n * 1e6,
                "db_cpu_us_per_row": meter.reading.total_s / n * 1e6,
                "driver_jvm_peak_mib": memory.root_peak_mib,
                "python_worker_peak_mib": max(memory.marked_peak_mib.values(), default=0.0),
                "python_workers_peak_total_mib": memory.marked_total_peak_mib,
                "python_worker_processes": len(memory.marked_peak_mib),
                "trigger_phases_s": trigger_phase_totals(progress),
                "start_to_first_trigger_s": round(
                    (_progress_time(progress[0]) - query_started_at).total_seconds(), 3
                )
                if progress
                else 0.0,
            }
            results["copy_1"] = copy_baseline(db, tmp, n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = results["ingest"]["rows_per_s"] / results["copy_1"]["rows_per_s"]
    results["ratio_ingest_over_copy_1"] = ratio
    results["breakdown"] = breakdown(results["ingest"], n)
    return results


def rows(f: dict[str, Any]) -> list[Cells]:
    i, b = f["ingest"], f["breakdown"]
    session = f"Spark session {b['session_s']:.1f} s; " if "session_s" in i else ""
    return [
        [f"end to end, {f['messages']:,} messages",
         f"{n0(i['rows_per_s'])} rows/s ({i['wall_seconds']:.0f} s, {i['batches']} batches, "
         f"median batch {n0(i['batch_rows_per_s_median'])} rows/s)",
         f"`\\copy` 1 stream {n0(f['copy_1']['rows_per_s'])} rows/s",
         f"{f['ratio_ingest_over_copy_1']:.2f}x",
         verdict(f, "e2e_ge_40pct_of_copy_1", "e2e_ge_25pct_of_copy_1")],
        ["end to end, peak memory",
         f"driver JVM {n0(i['driver_jvm_peak_mib'])} MiB, Python worker "
         f"{n0(i['python_worker_peak_mib'])} MiB (all workers "
         f"{n0(i['python_workers_peak_total_mib'])} MiB)", "", "", ""],
        ["end to end, where the time went",
         f"{session}first batch {b['first_batch_s']:.1f} s (warm-up {b['warm_up_s']:.1f} s); "
         f"other batches {b['other_batches_s']:.1f} s at {n0(b['steady_rows_per_s'])} rows/s; "
         f"outside batches {b['outside_batches_s']:.1f} s ({b['outside_per_batch_s']:.2f} s a "
         f"batch; query start to first trigger {b['start_s']:.1f} s, checkpoint and offset "
         f"commits {b['checkpoint_s']:.1f} s)", "", "", ""],
    ]  # fmt: skip


def headline(f: dict[str, Any], _citus: dict[str, Any] | None) -> Cells:
    i = f["ingest"]
    return [
        f"end to end, {millions(f['messages'])} messages Kafka -> `events`",
        f"{n0(i['rows_per_s'])} rows/s ({i['wall_seconds']:.0f} s)",
        f"`psql \\copy` {n0(f['copy_1']['rows_per_s'])} rows/s",
        f"{f['ratio_ingest_over_copy_1']:.2f}x",
    ]


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--max-offsets-per-trigger", type=int, help="a batch (default: the job's)")


SCENARIO = Scenario(
    "end_to_end",
    __doc__ or "",
    run,
    quick={"messages": 40_000, "max_offsets_per_trigger": 10_000},
    arguments=arguments,
    targets=lambda f: [
        Target("e2e_ge_40pct_of_copy_1", f["ratio_ingest_over_copy_1"], ">=", 0.4, ">= 0.4x"),
        Target(
            "e2e_ge_25pct_of_copy_1",
            f["ratio_ingest_over_copy_1"],
            ">=",
            0.25,
            ">= 0.25x (progress)",
        ),
    ],
    rows=rows,
    on_both=True,
    headline=headline,
)

if __name__ == "__main__":
    SCENARIO.main()
