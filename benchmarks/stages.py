"""Where a batch's time goes: the ingest path cut into stages, each run alone on the same topic.

N lab-format messages are loaded into a fresh topic once; then each stage reads the whole topic
with Spark's Kafka batch source and runs the path up to that stage into Spark's `noop` sink
(every column computed, nothing kept), best of `--repeat` runs. Kafka: the read alone, with
Kafka's default fetch sizes and with the job's. Then both designs of validation:
- spark rules: parse (`from_json`), validate (all rules as Spark expressions), to python (the
  validated rows handed to a Python worker as Arrow), sink (COPY into a scratch `events`);
- worker rules: to python (the raw records as Arrow), validate (`arrow_validation` in the
  worker), sink (the same COPY); and to python again with Spark 4.0's default byte bound on
  Arrow batches, which sizes the batch after every row (the job bounds batches by rows).
Each stage's own cost is its time minus the previous stage's (Kafka's for a design's first).

Run: `.venv/bin/python -m benchmarks.stages [--messages 1000000] [--quick] [--env local]`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
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
    build_spark,
    session_conf_set,
)
from clickstream_pipeline.ingest.arrow_validation import check_batch
from clickstream_pipeline.ingest.sink import SinkSettings
from clickstream_pipeline.ingest.source import kafka_read_options
from clickstream_pipeline.ingest.stream import (
    KAFKA_COLUMNS,
    ingest_settings,
    route,
    route_in_worker,
)
from clickstream_pipeline.ingest.transforms import Rules, validate, with_payload
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


def sized_per_row(spark: SparkSession, action: Callable[[], None]) -> None:
    """`action` with Spark 4.0's default Arrow byte bound, which sizes the batch every row."""
    with session_conf_set(spark, ARROW_MAX_BYTES_PER_BATCH, "256m"):
        action()


def noop(df: DataFrame) -> None:
    df.write.format("noop").mode("overwrite").save()


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
    args = parser.parse_args(argv)
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
                },
            }
            noop(validate(raw, rules))  # warm the JVM and a Python worker
            figures: dict[str, Any] = {}
            kafka_s = 0.0
            for design, stages in designs.items():
                previous = kafka_s
                for name, action in stages.items():
                    seconds = timed(action, args.repeat)
                    own = {"kafka defaults": seconds, SIZED_PER_ROW: seconds - kafka_s}.get(
                        name, seconds - previous
                    )
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
                    elif name not in ("kafka defaults", SIZED_PER_ROW):
                        previous = seconds
            spark_sink = figures["spark rules: sink"]["seconds"]
            worker_sink = figures["worker rules: sink"]["seconds"]
            results["worker_over_spark_rules"] = spark_sink / worker_sink
            per_row = figures[f"worker rules: {SIZED_PER_ROW}"]["seconds"]
            by_rows = figures["worker rules: to python"]["seconds"]
            results["to_python_rows_bound_over_bytes_per_row"] = per_row / by_rows
            say(
                f"Kafka to a Python worker, Arrow batches bounded by rows over Spark 4.0's "
                f"per-row byte check: {per_row / by_rows:.2f}x"
            )
            say(f"worker rules over Spark rules, Kafka to events: {spark_sink / worker_sink:.2f}x")
            results["stages"] = figures
        finally:
            spark.stop()
    return finish("stages", args, results)


if __name__ == "__main__":
    main()
