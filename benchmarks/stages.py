"""Where a batch's time goes: the ingest path cut into stages, each run alone over one topic of
N lab messages into Spark's `noop` sink, best of `--repeat`; both designs of validation (Spark
rules, worker rules) and Arrow batch bounds; a stage's own cost is its time minus the one it
builds on (docs/decisions/worker-rules.md, batch-sizes.md).

`--model NAME|PATH` (a path from the project root) fills the topic with that event model's
generated messages instead and validates by its rules: what a model's fields cost
(benchmarks/models/wide30.toml has 30; docs/decisions/event-model-performance.md).
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from benchmarks import harness
from benchmarks.common import load_topic, read_topic
from benchmarks.harness import Cells, Scenario, n0, row, say
from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.model import EventModel, load_model
from clickstream_pipeline.core.spark import ARROW_MAX_BYTES_PER_BATCH, build_spark, session_conf_set
from clickstream_pipeline.ingest.arrow_validation import check_batch
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.ingest.stream import (
    KAFKA_COLUMNS,
    ingest_settings,
    route,
    route_in_worker,
)
from clickstream_pipeline.ingest.transforms import validate, with_payload
from clickstream_pipeline.traffic.generator import EventClock, model_events, model_messages
from clickstream_pipeline.traffic.producer import ClientConf, SendOptions, send_messages
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.db import TEST_MODELS, bootstrapped_database, execute
from devkit.stack import fresh_topic, secrets_for

SIZED_PER_ROW = "to python, bytes checked per row"
SINK_SIZED_PER_ROW = "sink, bytes checked per row"
SINK_FEW_ROWS = "sink, 64 rows a batch"
MAX_RECORDS = "spark.sql.execution.arrow.maxRecordsPerBatch"
FETCH_DEFAULTS = {"kafka.max.poll.records": "500", "kafka.max.partition.fetch.bytes": "1048576"}


def noop(df: DataFrame) -> None:
    df.write.format("noop").mode("overwrite").save()


def drained(check: Callable[[pa.RecordBatch], object] = lambda batch: None) -> Callable:
    """A mapInArrow function that receives every batch (and `check`s it), returning nothing."""

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            check(batch)
        return iter(())

    return run


DRAINED = drained()


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def load_model_topic(kafka: ClientConf, topic: str, n: int, model: EventModel) -> None:
    """N messages of `model`'s generated events, stamped now, without a key as the lab's are
    (keyed by a skewed tenant, the topic's partitions would be uneven and the tasks with them)."""
    messages = model_messages(model_events(model, seed=1), model, EventClock())
    values = [(None, value) for _, value in itertools.islice(messages, n)]
    stats = send_messages(kafka, iter(values), SendOptions(topic=topic, count=n, progress=False))
    if not stats.ok or stats.acked != n:
        raise RuntimeError(stats.summary(topic))
    say(stats.summary(topic))


def with_model(cfg: Config, name: str) -> Config:
    return cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"model": name})})


def run(args: argparse.Namespace) -> dict[str, Any]:
    model = load_model(args.model)
    if model.name != "lab" and args.out is None:
        raise SystemExit("--model other than lab: give --out (results.json holds the lab's)")
    args.cfg = with_model(args.cfg, args.model)  # its rules, in the driver and the workers
    cfg, secrets, n = args.cfg, args.secrets, args.messages
    kafka = producer_config(cfg.kafka, secrets)
    say("scratch database bench_stages_*: bootstrapping")
    with (
        fresh_topic(kafka, "bench-stages") as topic,
        bootstrapped_database(
            harness.db_params(secrets), "bench_stages", dict.fromkeys((*TEST_MODELS, args.model))
        ) as db,
    ):
        if model.name == "lab":
            load_topic(kafka, topic, n)
        else:
            load_model_topic(kafka, topic, n, model)
        spark = build_spark(cfg, secrets)
        try:
            figures = time_stages(spark, args, topic, db)
        finally:
            spark.stop()
    best = {k: v["seconds"] for k, v in figures.items()}
    worker_sink = best["worker rules: sink"]
    sink_bounds = {
        f"worker_sink_{name.split(', ')[1].replace(' ', '_')}": best[f"worker rules: {name}"]
        / worker_sink
        for name in (SINK_SIZED_PER_ROW, SINK_FEW_ROWS)
    }
    return {
        **({} if model.name == "lab" else {"model": model.name, "fields": len(model.fields)}),
        "messages": n,
        "repeat": args.repeat,
        "to_python_rows_bound_over_bytes_per_row": best[f"worker rules: {SIZED_PER_ROW}"]
        / best["worker rules: to python"],
        **sink_bounds,
        "worker_over_spark_rules": best["spark rules: sink"] / worker_sink,
        "stages": figures,
    }


def time_stages(
    spark: SparkSession, args: argparse.Namespace, topic: str, db: ConnectionParams
) -> dict[str, Any]:
    """Each stage alone, best of `--repeat`, with its own time over the stage it builds on."""
    settings = ingest_settings(args.cfg, secrets_for(args.secrets, db))
    rules, now, batch_ids = settings.rules, datetime.now(UTC), itertools.count()
    raw = read_topic(spark, args.cfg, args.secrets, topic)
    defaults = read_topic(spark, args.cfg, args.secrets, topic, **FETCH_DEFAULTS)
    kafka_only, valid = raw.select(*KAFKA_COLUMNS), validate(raw, rules)
    check = drained(lambda b: check_batch(b, rules, int(now.timestamp() * 1e6)))

    def sink(routed: Callable[[Any], DataFrame]) -> Callable[[], None]:
        def write() -> None:
            execute(db, "TRUNCATE events, clickstream_ingest_ledger")
            noop(routed(settings.sink("bench-stages", next(batch_ids))))

        return write

    def to_python(df: DataFrame, check: Callable = DRAINED) -> Callable[[], None]:
        return lambda: noop(df.mapInArrow(check, "x int"))

    def conf(key: str, value: str, action: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with session_conf_set(spark, key, value):
                action()

        return run

    in_worker = sink(lambda s: route_in_worker(raw, s, rules, now))
    # (design, stage, action, the stage its own time is counted from); a byte bound (Spark 4.0's
    # default 256m) sizes each Arrow batch after every row; 64 rows a batch is 64 MiB over a
    # 1 MiB maximum message: bytes bounded by rows alone
    per_row_bytes = conf(ARROW_MAX_BYTES_PER_BATCH, "256m", to_python(kafka_only))
    stages = [
        ("kafka", "kafka defaults", lambda: noop(defaults), None),
        ("kafka", "kafka", lambda: noop(raw), None),
        ("spark rules", "parse", lambda: noop(with_payload(raw, rules)), "kafka: kafka"),
        ("spark rules", "validate", lambda: noop(valid), "spark rules: parse"),
        ("spark rules", "to python", to_python(valid), "spark rules: validate"),
        ("spark rules", "sink", sink(lambda s: route(raw, s, rules)), "spark rules: to python"),
        ("worker rules", SIZED_PER_ROW, per_row_bytes, "kafka: kafka"),
        ("worker rules", "to python", to_python(kafka_only), "kafka: kafka"),
        ("worker rules", "validate", to_python(kafka_only, check), "worker rules: to python"),
        ("worker rules", "sink", in_worker, "worker rules: validate"),
        (
            "worker rules",
            SINK_SIZED_PER_ROW,
            conf(ARROW_MAX_BYTES_PER_BATCH, "64m", in_worker),
            "worker rules: sink",
        ),
        ("worker rules", SINK_FEW_ROWS, conf(MAX_RECORDS, "64", in_worker), "worker rules: sink"),
    ]
    noop(valid)  # warm the JVM and a Python worker
    figures: dict[str, Any] = {}
    for design, name, action, over in stages:
        seconds = min(timed(action) for _ in range(args.repeat))
        own = seconds - (figures[over]["seconds"] if over else 0.0)
        figures[f"{design}: {name}"] = {
            "seconds": round(seconds, 3),
            "rows_per_s": args.messages / seconds,
            "own_seconds": round(own, 3),
            "own_us_per_row": own / args.messages * 1e6,
        }
        say(f"{design}: {name}: {seconds:.2f}s, own {own / args.messages * 1e6:.2f} us/row")
    return figures


def rows(f: dict[str, Any]) -> list[Cells]:
    s = f["stages"]
    rates = {name: n0(v["rows_per_s"]) for name, v in s.items()}
    own = "; ".join(
        f"{name.split(': ')[1]} {v['own_us_per_row']:.2f}"
        for name, v in s.items()
        if name.startswith(("spark rules", "worker rules"))
    )
    per_row, by_rows = s[f"worker rules: {SIZED_PER_ROW}"], s["worker rules: to python"]
    model = f" of model {f['model']} ({f['fields']} fields)" if "model" in f else ""
    return [
        row(
            f"stages, {f['messages']:,} messages{model}: Kafka -> `events`, worker rules",
            f"{rates['worker rules: sink']} rows/s",
            f"Spark rules {rates['spark rules: sink']} rows/s; Kafka read alone "
            f"{rates['kafka: kafka']} rows/s (Kafka's default fetch sizes "
            f"{rates['kafka: kafka defaults']})",
            f"{f['worker_over_spark_rules']:.2f}x",
            f"us per row, each stage: {own}",
        ),
        row(
            "stages: Kafka to a Python worker, Arrow batches bounded by rows",
            f"{n0(by_rows['rows_per_s'])} rows/s (own {by_rows['own_us_per_row']:.2f} us/row)",
            f"Spark 4.0's default, the batch sized after every row: "
            f"{n0(per_row['rows_per_s'])} rows/s (own {per_row['own_us_per_row']:.2f} us/row)",
            f"{f['to_python_rows_bound_over_bytes_per_row']:.2f}x",
        ),
    ]


SCENARIO = Scenario(
    "stages",
    __doc__ or "",
    run,
    flags={"messages": 1_000_000, "repeat": 3, "model": "lab"},
    quick={"messages": 20_000, "repeat": 1},
    rows=rows,
    on_both=True,
)

if __name__ == "__main__":
    SCENARIO.main()
