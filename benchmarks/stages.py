"""Where a batch's time goes: the ingest path cut into stages, each run alone over a topic of N
lab messages (or with `--model NAME|PATH` that event model's) into Spark's `noop` sink, best of
`--repeat`; a stage's own cost is its time minus the one it builds on (docs/decisions/)."""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from benchmarks.common import load_topic, read_topic, truncate
from benchmarks.harness import Scenario, say, scratch_db
from clickstream_pipeline.core.model import load_model
from clickstream_pipeline.core.spark import ARROW_MAX_BYTES_PER_BATCH, build_spark, session_conf_set
from clickstream_pipeline.ingest import stream
from clickstream_pipeline.ingest.arrow_validation import check_batch
from clickstream_pipeline.ingest.transforms import validate, with_payload
from clickstream_pipeline.traffic.generator import EventClock, model_events, model_messages
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.db import TEST_MODELS
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    model = load_model(args.model)
    if model.name != "lab" and args.out is None:
        raise SystemExit("--model other than lab: give --out (results.json holds the lab's)")
    ingest = args.cfg.ingest.model_copy(update={"model": args.model})
    args.cfg = args.cfg.model_copy(update={"ingest": ingest})  # its rules, in driver and workers
    n, models = args.messages, dict.fromkeys((*TEST_MODELS, args.model))
    with (
        fresh_topic(args.kafka, "bench-stages") as topic,
        scratch_db(args.secrets, "bench_stages", models) as db,
    ):
        values: Iterable[bytes] = ()
        if model.name != "lab":  # without a key as the lab's (a skewed tenant's: uneven tasks)
            messages = model_messages(model_events(model, seed=1), model, EventClock())
            values = (value for _, value in messages)
        load_topic(args.kafka, topic, n, values)
        spark = build_spark(args.cfg, args.secrets)
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
    settings = stream.ingest_settings(args.cfg, secrets_for(args.secrets, db))
    rules, now, batch_ids = settings.rules, datetime.now(UTC), itertools.count()
    raw = read_topic(spark, args.cfg, args.secrets, topic)
    defaults = read_topic(spark, args.cfg, args.secrets, topic, **FETCH_DEFAULTS)
    kafka_only, valid = raw.select(*stream.KAFKA_COLUMNS), validate(raw, rules)
    check = drained(lambda b: check_batch(b, rules, int(now.timestamp() * 1e6)))

    def sink(routed: Callable[[Any], DataFrame]) -> Callable[[], None]:
        def write() -> None:
            truncate(db, "events", "clickstream_ingest_ledger")
            noop(routed(settings.sink("bench-stages", next(batch_ids))))

        return write

    def to_python(df: DataFrame, check: Callable = DRAINED) -> Callable[[], None]:
        return lambda: noop(df.mapInArrow(check, "x int"))

    def conf(key: str, value: str, action: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with session_conf_set(spark, key, value):
                action()

        return run

    in_spark = sink(lambda s: stream.route(raw, s, rules))
    in_worker = sink(lambda s: stream.route_in_worker(raw, s, rules, now))
    # (design, stage, action, the stage its own time is counted from); a byte bound (Spark 4.0's
    # default 256m) sizes each Arrow batch after every row; 64 rows a batch is 64 MiB over a
    # 1 MiB maximum message: bytes bounded by rows alone
    per_row_bytes = conf(ARROW_MAX_BYTES_PER_BATCH, "256m", to_python(kafka_only))
    sink_per_row_bytes = conf(ARROW_MAX_BYTES_PER_BATCH, "64m", in_worker)
    validated = to_python(kafka_only, check)
    stages = [
        ("kafka", "kafka defaults", lambda: noop(defaults), None),
        ("kafka", "kafka", lambda: noop(raw), None),
        ("spark rules", "parse", lambda: noop(with_payload(raw, rules)), "kafka: kafka"),
        ("spark rules", "validate", lambda: noop(valid), "spark rules: parse"),
        ("spark rules", "to python", to_python(valid), "spark rules: validate"),
        ("spark rules", "sink", in_spark, "spark rules: to python"),
        ("worker rules", SIZED_PER_ROW, per_row_bytes, "kafka: kafka"),
        ("worker rules", "to python", to_python(kafka_only), "kafka: kafka"),
        ("worker rules", "validate", validated, "worker rules: to python"),
        ("worker rules", "sink", in_worker, "worker rules: validate"),
        ("worker rules", SINK_SIZED_PER_ROW, sink_per_row_bytes, "worker rules: sink"),
        ("worker rules", SINK_FEW_ROWS, conf(MAX_RECORDS, "64", in_worker), "worker rules: sink"),
    ]
    noop(valid)  # warm the JVM and a Python worker
    figures: dict[str, Any] = {}
    for design, name, action, over in stages:
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            action()
            times.append(time.perf_counter() - started)
        seconds = min(times)
        own = seconds - (figures[over]["seconds"] if over else 0.0)
        figures[f"{design}: {name}"] = {
            "seconds": round(seconds, 3),
            "rows_per_s": args.messages / seconds,
            "own_seconds": round(own, 3),
            "own_us_per_row": own / args.messages * 1e6,
        }
        say(f"{design}: {name}: {seconds:.2f}s, own {own / args.messages * 1e6:.2f} us/row")
    return figures


def derived(f: dict[str, Any]) -> dict[str, Any]:
    """Each stage's own cost a row, and the model measured (when not the lab's)."""
    own = (
        f"{name.split(': ')[1]} {v['own_us_per_row']:.2f}"
        for name, v in f["stages"].items()
        if name.startswith(("spark rules", "worker rules"))
    )
    model = f" of model {f['model']} ({f['fields']} fields)" if "model" in f else ""
    return {"own": "; ".join(own), "model": model, "s": f["stages"]}


SCENARIO = Scenario(
    "stages",
    __doc__ or "",
    run,
    flags={"messages": 1_000_000, "repeat": 3, "model": "lab"},
    quick={"messages": 10_000, "repeat": 1},
    rows=(
        "stages, {messages:,} messages{model}: Kafka -> `events`, worker rules"
        " | {s[worker rules: sink][rows_per_s]:,.0f} rows/s"
        " | Spark rules {s[spark rules: sink][rows_per_s]:,.0f} rows/s; Kafka read alone"
        " {s[kafka: kafka][rows_per_s]:,.0f} rows/s (Kafka's default fetch sizes"
        " {s[kafka: kafka defaults][rows_per_s]:,.0f}) | {worker_over_spark_rules:.2f}x"
        " | us per row, each stage: {own}",
        "stages: Kafka to a Python worker, Arrow batches bounded by rows"
        " | {s[worker rules: to python][rows_per_s]:,.0f} rows/s (own"
        " {s[worker rules: to python][own_us_per_row]:.2f} us/row) | Spark 4.0's default, the"
        " batch sized after every row: {s[worker rules: to python, bytes checked per row]"
        "[rows_per_s]:,.0f} rows/s (own {s[worker rules: to python, bytes checked per row]"
        "[own_us_per_row]:.2f} us/row) | {to_python_rows_bound_over_bytes_per_row:.2f}x",
    ),
    derived=derived,
    on_both=True,
)

if __name__ == "__main__":
    SCENARIO.main()
