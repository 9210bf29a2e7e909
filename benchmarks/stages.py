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

Run: `.venv/bin/python -m benchmarks.stages [--messages 1000000] [--quick] [--env local]`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from benchmarks.end_to_end import load_topic
from benchmarks.harness import (
    Cells,
    Scenario,
    db_params,
    n0,
    say,
    scratch_database,
    setup_env,
)
from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.core.spark import (
    ARROW_MAX_BYTES_PER_BATCH,
    build_spark,
    session_conf_set,
)
from clickstream_pipeline.ingest.arrow_validation import check_batch
from clickstream_pipeline.ingest.sink import SinkSettings
from clickstream_pipeline.ingest.source import kafka_read_options, producer_config
from clickstream_pipeline.ingest.stream import (
    KAFKA_COLUMNS,
    ingest_settings,
    route,
    route_in_worker,
)
from clickstream_pipeline.ingest.transforms import Rules, validate, with_payload
from devkit.db import execute
from devkit.stack import fresh_topic, secrets_for


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


def timed(action: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg, secrets = setup_env(args.env)
    n = args.messages
    results: dict[str, Any] = {"messages": n, "repeat": args.repeat}
    with (
        fresh_topic(producer_config(cfg.kafka, secrets), "bench-stages") as topic,
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
    return results


def rows(f: dict[str, Any]) -> list[Cells]:
    s = f["stages"]
    own = "; ".join(
        f"{name.split(': ')[1]} {v['own_us_per_row']:.2f}"
        for name, v in s.items()
        if name.startswith(("spark rules", "worker rules"))
    )
    found = [
        [f"stages, {f['messages']:,} messages: Kafka -> `events`, worker rules",
         f"{n0(s['worker rules: sink']['rows_per_s'])} rows/s",
         f"Spark rules {n0(s['spark rules: sink']['rows_per_s'])} rows/s; Kafka read alone "
         f"{n0(s['kafka: kafka']['rows_per_s'])} rows/s (Kafka's default fetch sizes "
         f"{n0(s['kafka: kafka defaults']['rows_per_s'])})",
         f"{f['worker_over_spark_rules']:.2f}x", f"us per row, each stage: {own}"]
    ]  # fmt: skip
    per_row, by_rows = s.get(f"worker rules: {SIZED_PER_ROW}"), s.get("worker rules: to python")
    if per_row and by_rows:
        found.append(
            ["stages: Kafka to a Python worker, Arrow batches bounded by rows",
             f"{n0(by_rows['rows_per_s'])} rows/s (own {by_rows['own_us_per_row']:.2f} us/row)",
             f"Spark 4.0's default, the batch sized after every row: "
             f"{n0(per_row['rows_per_s'])} rows/s (own {per_row['own_us_per_row']:.2f} us/row)",
             f"{f['to_python_rows_bound_over_bytes_per_row']:.2f}x", ""]
        )  # fmt: skip
    return found


def arguments(parser: argparse.ArgumentParser) -> None:
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


SCENARIO = Scenario(
    "stages",
    __doc__ or "",
    run,
    quick={"messages": 20_000, "repeat": 1},
    arguments=arguments,
    rows=rows,
    on_both=True,
)

if __name__ == "__main__":
    SCENARIO.main()
