"""Where a batch's time goes: the ingest path cut into stages, each run alone on the same topic.

N lab-format messages are loaded into a fresh topic once; then each stage reads the whole topic
with Spark's Kafka batch source and runs the path up to that stage into Spark's `noop` sink
(every column computed, nothing kept), best of `--repeat` runs. Kafka: the read alone, with
Kafka's default fetch sizes and with the job's. Then both designs of validation:
- spark rules: parse (`from_json`), validate (all rules as Spark expressions), to python (the
  validated rows handed to a Python worker as Arrow), sink (COPY into a scratch `events`);
- worker rules: to python (the raw records as Arrow), validate (`arrow_validation` in the
  worker), sink (the same COPY, Arrow batches bounded by rows only); and to python again with
  Spark 4.0's default byte bound on Arrow batches, which sizes the batch after every row; then
  the sink with the job's byte bound (`ingest.arrow_batch_bytes`, 64 MiB: sized every row) and
  with 64-row batches (64 MiB over a 1 MiB maximum message: bytes bounded by rows alone).
Each stage's own cost is its time minus the previous stage's (Kafka's for a design's first;
the sink's for the last two). `--designs` picks designs; `--interleaved` times the stages in
rounds, one run of each per round, so a busy machine's noise falls on all alike.

With `--large-messages N`: instead, N valid messages of `--message-bytes` (1 MB) each, padded
lab messages, through the ingest's micro-batch (`process_batch`, both passes) twice on the same
topic: with the job's byte bounds, then as before them (Arrow batches bounded by rows only, a
task holding every record it returns); prints each run's peak memory of the Python workers
(VmHWM from /proc, reset between runs) or how it failed.

Run: `.venv/bin/python -m benchmarks.stages [--messages 1000000] [--quick] [--env local]`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from confluent_kafka import Producer
from pyspark import SparkContext
from pyspark.sql import DataFrame, SparkSession

from benchmarks.common import (
    benchmark_parser,
    db_params,
    finish,
    machine_facts,
    say,
    scratch_database,
    secrets_for,
    setup_env,
)
from benchmarks.end_to_end import load_topic
from benchmarks.ingest_support import fresh_topic
from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.core.spark import (
    ARROW_MAX_BYTES_PER_BATCH,
    ARROW_NO_BYTE_BOUND,
    arrow_batches_bounded,
    build_spark,
    session_conf_set,
)
from clickstream_pipeline.ingest.arrow_validation import check_batch
from clickstream_pipeline.ingest.sink import SinkSettings
from clickstream_pipeline.ingest.source import kafka_read_options, producer_config
from clickstream_pipeline.ingest.stream import (
    KAFKA_COLUMNS,
    ingest_settings,
    process_batch,
    route,
    route_in_worker,
)
from clickstream_pipeline.ingest.transforms import Rules, validate, with_payload
from clickstream_pipeline.traffic.producer import create_topic, delete_topic
from devkit.db import execute


def read_topic(
    spark: SparkSession, cfg: Config, secrets: Secrets, topic: str, **options: str
) -> DataFrame:
    """The whole topic with the ingest job's Kafka options (and any given here)."""
    settings = kafka_read_options(cfg.kafka, secrets)
    for streaming_only in ("maxOffsetsPerTrigger", "subscribePattern"):
        settings.pop(streaming_only, None)
    settings.update({"subscribe": topic, "startingOffsets": "earliest", "endingOffsets": "latest"})
    settings.update(options)
    reader = spark.read.format("kafka")
    for key, value in settings.items():
        reader = reader.option(key, value)
    return reader.load()


def drain(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """A mapInArrow function that receives every batch and returns nothing."""
    for _ in batches:
        pass
    return iter(())


def check_only(rules: Rules, now_us: int) -> Callable[[Iterable[pa.RecordBatch]], Iterator]:
    """A mapInArrow function that validates every batch in the worker and returns nothing."""

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            check_batch(batch, rules, now_us)
        return iter(())

    return run


SIZED_PER_ROW = "to python, bytes checked per row"
SINK_SIZED_PER_ROW = "sink, bytes checked per row"
SINK_FEW_ROWS = "sink, 64 rows a batch"
# stages measured against the design's sink (their own time: what they add to it)
OVER_SINK = (SINK_SIZED_PER_ROW, SINK_FEW_ROWS)
ARROW_MAX_RECORDS_PER_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"


def sized_per_row(spark: SparkSession, action: Callable[[], None], limit: str = "256m") -> None:
    """`action` with an Arrow byte bound (Spark 4.0's default 256m), which sizes the batch
    after every row."""
    with session_conf_set(spark, ARROW_MAX_BYTES_PER_BATCH, limit):
        action()


def few_rows(spark: SparkSession, action: Callable[[], None], rows: int = 64) -> None:
    """`action` with Arrow batches of `rows` rows: 64 MiB over a 1 MiB maximum message."""
    with session_conf_set(spark, ARROW_MAX_RECORDS_PER_BATCH, str(rows)):
        action()


def noop(df: DataFrame) -> None:
    df.write.format("noop").mode("overwrite").save()


def python_workers() -> list[int]:
    """This process's descendants running PySpark's worker daemon, and the workers it forks."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = [], [os.getpid()]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            program = os.path.basename(command.split(b"\0")[0])
            if program.startswith(b"python") and b"daemon" in command:  # not the JVM
                found.append(pid)
    return found


def reset_peak_memory(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):  # a worker gone meanwhile
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM (Linux 4.0+)


def peak_memory_mib(pids: list[int]) -> float:
    """The largest peak resident memory (VmHWM) among `pids`, in MiB."""
    peaks = [0]
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        peaks += [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")]
    return max(peaks) / 1024


def padded_message(size: int, event_id: int) -> bytes:
    """A valid lab message of exactly `size` bytes (an extra field pads it)."""
    body: dict[str, Any] = {
        "customer_id": 1 + event_id % 1000,
        "event_type": "click",
        "country": "India",
        "browser": "chrome",
        "device_id": 1,
        "session_id": 1,
        "event_id": event_id,
        "pad": "",
    }
    body["pad"] = "x" * (size - len(json.dumps(body)))
    return json.dumps(body).encode()


def large_messages(args: argparse.Namespace) -> dict[str, Any]:
    """Peak memory of the Python workers over a topic of large messages, before and bounded."""
    cfg, secrets = setup_env(args.env)
    n, size = args.large_messages, args.message_bytes
    results: dict[str, Any] = {"machine": machine_facts(), "messages": n, "message_bytes": size}
    conf = producer_config(cfg.kafka, secrets)
    topic = f"bench-large-{uuid.uuid4().hex[:8]}"
    create_topic(conf, topic, 2, {"max.message.bytes": str(2 * size + (1 << 20))})
    try:
        producer = Producer({**conf, "message.max.bytes": 2 * size + (1 << 20)})
        for i in range(n):
            producer.produce(topic, padded_message(size, i + 1))
            producer.poll(0)
        if producer.flush(120):
            raise RuntimeError("messages not acknowledged")
        say(f"topic {topic}: {n:,} messages of {size:,} bytes")
        with scratch_database(db_params(secrets), "bench_large") as db:
            settings = ingest_settings(cfg, secrets_for(secrets, db))
            before = dataclasses.replace(
                settings, target=dataclasses.replace(settings.target, buffer_bytes=2**62)
            )
            # bounded first: the run before the bounds may take the JVM down
            runs = {
                "bounded (the job's settings)": (settings, None),
                "before (rows only, whole task held)": (before, ARROW_NO_BYTE_BOUND),
            }
            spark = build_spark(cfg, secrets)
            arrow_batches_bounded(spark, cfg.ingest.arrow_batch_bytes)
            try:
                raw = read_topic(spark, cfg, secrets, topic)
                for batch_id, (name, (run, arrow_bytes)) in enumerate(runs.items()):
                    execute(db, "TRUNCATE events, clickstream_ingest_ledger")
                    reset_peak_memory(python_workers())
                    started = time.perf_counter()
                    try:
                        with session_conf_set(spark, ARROW_MAX_BYTES_PER_BATCH, arrow_bytes):
                            report = process_batch(raw, batch_id, run)
                    except Exception as exc:
                        lines = str(exc).strip().splitlines() or [type(exc).__name__]
                        causes = [x for x in lines if "Exception:" in x or "Error:" in x]
                        failure = (causes or lines)[-1].strip()
                        time.sleep(1)
                        jvm = getattr(SparkContext._gateway, "proc", None)
                        if jvm is not None and jvm.poll() is not None:
                            failure = f"the JVM exited with {jvm.returncode}: {failure}"
                        results[name] = {"failed": failure[:300]}
                        say(f"{name}: FAILED ({failure[:300]})")
                        break
                    seconds = time.perf_counter() - started
                    peak = peak_memory_mib(python_workers())
                    if report.rows_written != n:
                        raise RuntimeError(f"{name}: {report.rows_written} of {n} written")
                    results[name] = {"peak_worker_mib": round(peak, 1), "seconds": seconds}
                    say(f"{name}: Python worker peak {peak:,.0f} MiB, {seconds:.1f}s")
            finally:
                with contextlib.suppress(Exception):  # a JVM gone already
                    spark.stop()
    finally:
        delete_topic(conf, topic)
    return finish("stages_large", args, results)


def timed(action: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = benchmark_parser(__doc__, "100,000 messages, 1 run each")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--designs",
        default="kafka,spark rules,worker rules",
        help="the designs to run, comma-separated (kafka is always run: the others need it)",
    )
    parser.add_argument(
        "--interleaved",
        action="store_true",
        help="time the stages in rounds, one run of each per round (a busy machine's noise "
        "then falls on all alike), instead of each stage's runs back to back",
    )
    parser.add_argument(
        "--large-messages",
        type=int,
        default=0,
        help="instead: this many large messages, the Python workers' peak memory before and "
        "with the byte bounds",
    )
    parser.add_argument("--message-bytes", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if args.large_messages:
        return large_messages(args)
    if args.quick:
        args.messages, args.repeat = 100_000, 1
    cfg, secrets = setup_env(args.env)
    n = args.messages
    results: dict[str, Any] = {"machine": machine_facts(), "messages": n, "repeat": args.repeat}
    with (
        fresh_topic(cfg, secrets, "bench-stages") as topic,
        scratch_database(db_params(secrets), "bench_stages") as db,
    ):
        load_topic(cfg, secrets, topic, n)
        db_secrets = secrets_for(secrets, db)
        settings = ingest_settings(cfg, db_secrets)
        spark = build_spark(cfg, secrets)
        try:
            raw = read_topic(spark, cfg, secrets, topic)
            kafka_defaults = read_topic(
                spark,
                cfg,
                secrets,
                topic,
                **{"kafka.max.poll.records": "500", "kafka.max.partition.fetch.bytes": "1048576"},
            )
            rules = settings.rules
            runs = iter(range(10**6))
            now = datetime.now(UTC)

            def sink(routed: Callable[[SinkSettings], DataFrame]) -> Callable[[], None]:
                def run() -> None:
                    execute(db, "TRUNCATE events, clickstream_ingest_ledger")
                    noop(routed(settings.sink("bench-stages", next(runs))))

                return run

            kafka_rows = raw.select(*KAFKA_COLUMNS)
            designs: dict[str, dict[str, Callable[[], None]]] = {
                "kafka": {
                    "kafka defaults": lambda: noop(kafka_defaults),
                    "kafka": lambda: noop(raw),
                },
                "spark rules": {
                    "parse": lambda: noop(with_payload(raw)),
                    "validate": lambda: noop(validate(raw, rules)),
                    "to python": lambda: noop(validate(raw, rules).mapInArrow(drain, "x int")),
                    "sink": sink(lambda s: route(raw, s, rules)),
                },
                "worker rules": {
                    SIZED_PER_ROW: lambda: sized_per_row(
                        spark, lambda: noop(kafka_rows.mapInArrow(drain, "x int"))
                    ),
                    "to python": lambda: noop(kafka_rows.mapInArrow(drain, "x int")),
                    "validate": lambda: noop(
                        kafka_rows.mapInArrow(
                            check_only(rules, int(now.timestamp() * 1e6)), "x int"
                        )
                    ),
                    "sink": sink(lambda s: route_in_worker(raw, s, rules, now)),
                    SINK_SIZED_PER_ROW: lambda: sized_per_row(
                        spark, sink(lambda s: route_in_worker(raw, s, rules, now)), "64m"
                    ),
                    SINK_FEW_ROWS: lambda: few_rows(
                        spark, sink(lambda s: route_in_worker(raw, s, rules, now))
                    ),
                },
            }
            wanted = {"kafka", *(d.strip() for d in args.designs.split(","))}
            designs = {name: stages for name, stages in designs.items() if name in wanted}
            noop(validate(raw, rules))  # warm the JVM and a Python worker
            figures: dict[str, Any] = {}
            best: dict[tuple[str, str], float] = {}
            for _ in range(args.repeat if args.interleaved else 0):  # rounds of every stage
                for design, stages in designs.items():
                    for name, action in stages.items():
                        seconds = timed(action, 1)
                        best[design, name] = min(best.get((design, name), seconds), seconds)
            kafka_s = 0.0
            for design, stages in designs.items():
                previous = kafka_s
                for name, action in stages.items():
                    seconds = best.get((design, name)) or timed(action, args.repeat)
                    own = {"kafka defaults": seconds, SIZED_PER_ROW: seconds - kafka_s}.get(
                        name, seconds - previous
                    )
                    if name in OVER_SINK:
                        own = seconds - figures[f"{design}: sink"]["seconds"]
                    figures[f"{design}: {name}"] = {
                        "seconds": round(seconds, 3),
                        "rows_per_s": n / seconds,
                        "own_seconds": round(own, 3),
                        "own_us_per_row": own / n * 1e6,
                    }
                    say(
                        f"{design:>12} {name:>14}: {seconds:6.2f}s cumulative "
                        f"({n / seconds:>9,.0f} rows/s), own {own:5.2f}s = "
                        f"{own / n * 1e6:.2f} us/row"
                    )
                    if name == "kafka":
                        kafka_s = seconds
                    elif name not in ("kafka defaults", SIZED_PER_ROW, *OVER_SINK):
                        previous = seconds
            if "worker rules" in designs:
                worker_sink = figures["worker rules: sink"]["seconds"]
                per_row = figures[f"worker rules: {SIZED_PER_ROW}"]["seconds"]
                by_rows = figures["worker rules: to python"]["seconds"]
                results["to_python_rows_bound_over_bytes_per_row"] = per_row / by_rows
                say(
                    f"Kafka to a Python worker, Arrow batches bounded by rows over Spark 4.0's "
                    f"per-row byte check: {per_row / by_rows:.2f}x"
                )
                for name in OVER_SINK:
                    ratio = figures[f"worker rules: {name}"]["seconds"] / worker_sink
                    results[f"worker_sink_{name.split(', ')[1].replace(' ', '_')}"] = ratio
                    say(f"Kafka to events, {name.split(', ')[1]}: {ratio:.2f}x the time")
            if "worker rules" in designs and "spark rules" in designs:
                spark_sink = figures["spark rules: sink"]["seconds"]
                results["worker_over_spark_rules"] = spark_sink / worker_sink
                ratio = spark_sink / worker_sink
                say(f"worker rules over Spark rules, Kafka to events: {ratio:.2f}x")
            results["stages"] = figures
        finally:
            spark.stop()
    return finish("stages", args, results)


if __name__ == "__main__":
    main()
