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

import itertools
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from benchmarks.common import (
    DbCpuMeter,
    PeakMemory,
    benchmark_parser,
    db_params,
    finish,
    machine_facts,
    psql_copy,
    psql_env,
    say,
    scratch_database,
    secrets_for,
    setup_env,
)
from benchmarks.ingest_support import delete_checkpoint, fresh_topic, ingest_config, jvm_pid
from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.schema import EVENT_COLUMNS
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.core.spark import build_spark
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.ingest.stream import start_ingest
from clickstream_pipeline.traffic.generator import Event, encode_event, lab_uniform_events
from clickstream_pipeline.traffic.producer import SendOptions, kafka_settings
from clickstream_pipeline.warehouse.database import fetch
from devkit.db import execute


def load_topic(
    cfg: Config,
    secrets: Secrets,
    topic: str,
    n: int,
    encode: Callable[[Event], bytes] = encode_event,
) -> float:
    """N lab-format messages (the lab's six fields, no key), pre-serialised; returns msg/s."""
    started = time.perf_counter()
    values = [encode(e) for e in itertools.islice(lab_uniform_events(1), n)]
    say(f"serialised {n:,} messages in {time.perf_counter() - started:.1f}s")
    producer = Producer(kafka_settings(producer_config(cfg.kafka, secrets), SendOptions(topic)))
    produce, poll = producer.produce, producer.poll
    started = time.perf_counter()
    step = max(n // 8, 1)
    for i, value in enumerate(values):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:
                poll(0.05)
        if i & 1023 == 0:
            poll(0)
        if i and i % step == 0:
            rate = i / (time.perf_counter() - started)
            say(f"produced {i:,}/{n:,} ({rate:,.0f} msg/s)")
    left = producer.flush(300)
    seconds = time.perf_counter() - started
    if left:
        raise RuntimeError(f"{left} messages not acknowledged")
    say(f"topic loaded: {n:,} messages in {seconds:.1f}s ({n / seconds:,.0f} msg/s)")
    return n / seconds


def copy_baseline(db: Any, folder: Path, n: int) -> dict[str, Any]:
    """Export the ingested rows as CSV, truncate, `\\copy` them back with one stream."""
    path = folder / "events.csv"
    cols = ", ".join(EVENT_COLUMNS)
    export = f"\\copy (SELECT {cols} FROM events) to '{path}' with (format csv)"  # noqa: S608
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", export], env=psql_env(db), check=True
    )
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


def _n(value: float) -> str:
    return f"{value:,.0f}"


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = benchmark_parser(__doc__, "200,000 messages, 50,000 a batch")
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument(
        "--max-offsets-per-trigger", type=int, help="messages a batch (default: the job's)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.max_offsets_per_trigger = 200_000, 50_000
    base_cfg, base_secrets = setup_env(args.env)
    if args.max_offsets_per_trigger is None:
        args.max_offsets_per_trigger = base_cfg.kafka.max_offsets_per_trigger
    n = args.messages
    results: dict[str, Any] = {
        "machine": machine_facts(),
        "messages": n,
        "max_offsets_per_trigger": args.max_offsets_per_trigger,
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    try:
        with (
            fresh_topic(base_cfg, base_secrets, "bench-e2e") as topic,
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
            ing = results["ingest"]
            say(
                f"ingest: {n:,} rows in {wall:.1f}s from job start to last commit (Spark "
                f"session {session_s:.1f}s of it) = "
                f"{ing['rows_per_s']:,.0f} rows/s over {len(batches)} batches (median batch "
                f"{ing['batch_rows_per_s_median']:,.0f} rows/s); driver JVM peak "
                f"{ing['driver_jvm_peak_mib']:,.0f} MiB, Python worker peak "
                f"{ing['python_worker_peak_mib']:,.0f} MiB (all workers "
                f"{ing['python_workers_peak_total_mib']:,.0f} MiB)"
            )
            results["copy_1"] = copy_baseline(db, tmp, n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = results["ingest"]["rows_per_s"] / results["copy_1"]["rows_per_s"]
    results["ratio_ingest_over_copy_1"] = ratio
    results["breakdown"] = breakdown(results["ingest"], n)
    b = results["breakdown"]
    print(
        f"\nwhere the {results['ingest']['wall_seconds']:.1f}s went: Spark session "
        f"{b['session_s']:.1f}s; first batch "
        f"{b['first_batch_s']:.1f}s ({b['warm_up_s']:.1f}s of it warm-up over the median batch); "
        f"{b['other_batches_s']:.1f}s in the other batches ({_n(b['steady_rows_per_s'])} rows/s; "
        f"per stage: benchmarks/stages.py); {b['outside_batches_s']:.1f}s outside batches "
        f"({b['outside_per_batch_s']:.2f}s a batch): {b['start_s']:.1f}s from the query's start "
        f"to its first trigger, {b['checkpoint_s']:.1f}s writing the offset log and commits "
        f"(walCommit + commitOffsets), the rest planning and Spark's bookkeeping"
    )
    results["targets"] = {"e2e_ge_40pct_of_copy_1": ratio >= 0.4}
    print(
        f"\nend to end {results['ingest']['rows_per_s']:,.0f} rows/s vs psql \\copy x1 "
        f"{results['copy_1']['rows_per_s']:,.0f} rows/s: ratio {ratio:.2f} "
        f"(target >= 0.40: {'met' if ratio >= 0.4 else 'MISSED'})"
    )
    return finish("end_to_end", args, results)


if __name__ == "__main__":
    main()
