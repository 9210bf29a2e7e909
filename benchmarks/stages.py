"""Where a batch's time goes: the ingest path cut into stages, each run alone over one topic of
N lab messages into Spark's `noop` sink, best of `--repeat`; both designs of validation (Spark
rules, worker rules) and Arrow batch bounds; a stage's own cost is its time minus the one it
builds on (docs/decisions/worker-rules.md, batch-sizes.md).
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame

from benchmarks.common import load_topic, read_topic
from benchmarks.harness import Cells, Scenario, n0, say, scratch_db
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
from devkit.db import execute
from devkit.stack import fresh_topic, secrets_for

SIZED_PER_ROW = "to python, bytes checked per row"
SINK_SIZED_PER_ROW = "sink, bytes checked per row"
SINK_FEW_ROWS = "sink, 64 rows a batch"
MAX_RECORDS = "spark.sql.execution.arrow.maxRecordsPerBatch"


def noop(df: DataFrame) -> None:
    df.write.format("noop").mode("overwrite").save()


def drained(check: Callable[[pa.RecordBatch], object] = lambda batch: None) -> Callable:
    """A mapInArrow function that receives every batch (and `check`s it), returning nothing."""

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            check(batch)
        return iter(())

    return run


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg, secrets, n = args.cfg, args.secrets, args.messages
    with (
        fresh_topic(producer_config(cfg.kafka, secrets), "bench-stages") as topic,
        scratch_db(secrets, "bench_stages") as db,
    ):
        load_topic(cfg, secrets, topic, n)
        settings, spark = ingest_settings(cfg, secrets_for(secrets, db)), build_spark(cfg, secrets)
        try:
            raw, rules, now = (
                read_topic(spark, cfg, secrets, topic),
                settings.rules,
                datetime.now(UTC),
            )
            fetch_defaults = {"kafka.max.poll.records": "500",
                              "kafka.max.partition.fetch.bytes": "1048576"}  # fmt: skip
            defaults = read_topic(spark, cfg, secrets, topic, **fetch_defaults)
            to_python = raw.select(*KAFKA_COLUMNS).mapInArrow
            batch_ids = itertools.count()

            def sink(routed: Callable[[Any], DataFrame]) -> Callable[[], None]:
                def write() -> None:
                    execute(db, "TRUNCATE events, clickstream_ingest_ledger")
                    noop(routed(settings.sink("bench-stages", next(batch_ids))))

                return write

            def conf(key: str, value: str, action: Callable[[], None]) -> Callable[[], None]:
                def run() -> None:
                    with session_conf_set(spark, key, value):
                        action()

                return run

            in_worker = sink(lambda s: route_in_worker(raw, s, rules, now))
            check = drained(lambda b: check_batch(b, rules, int(now.timestamp() * 1e6)))
            # (design, stage, action, the stage its own time is counted from); a byte bound
            # (Spark 4.0's default 256m) sizes each Arrow batch after every row; 64 rows a batch
            # is 64 MiB over a 1 MiB maximum message: bytes bounded by rows alone
            # fmt: off
            stages = [
                ("kafka", "kafka defaults", lambda: noop(defaults), None),
                ("kafka", "kafka", lambda: noop(raw), None),
                ("spark rules", "parse", lambda: noop(with_payload(raw)), "kafka: kafka"),
                ("spark rules", "validate", lambda: noop(validate(raw, rules)),
                 "spark rules: parse"),
                ("spark rules", "to python",
                 lambda: noop(validate(raw, rules).mapInArrow(drained(), "x int")),
                 "spark rules: validate"),
                ("spark rules", "sink", sink(lambda s: route(raw, s, rules)),
                 "spark rules: to python"),
                ("worker rules", SIZED_PER_ROW, conf(ARROW_MAX_BYTES_PER_BATCH, "256m",
                 lambda: noop(to_python(drained(), "x int"))), "kafka: kafka"),
                ("worker rules", "to python", lambda: noop(to_python(drained(), "x int")),
                 "kafka: kafka"),
                ("worker rules", "validate", lambda: noop(to_python(check, "x int")),
                 "worker rules: to python"),
                ("worker rules", "sink", in_worker, "worker rules: validate"),
                ("worker rules", SINK_SIZED_PER_ROW, conf(ARROW_MAX_BYTES_PER_BATCH, "64m",
                 in_worker), "worker rules: sink"),
                ("worker rules", SINK_FEW_ROWS, conf(MAX_RECORDS, "64", in_worker),
                 "worker rules: sink"),
            ]
            # fmt: on
            noop(validate(raw, rules))  # warm the JVM and a Python worker
            figures: dict[str, Any] = {}
            for design, name, action, over in stages:
                seconds = min(timed(action) for _ in range(args.repeat))
                own = seconds - (figures[over]["seconds"] if over else 0.0)
                figures[f"{design}: {name}"] = {"seconds": round(seconds, 3),
                    "rows_per_s": n / seconds, "own_seconds": round(own, 3),
                    "own_us_per_row": own / n * 1e6}  # fmt: skip
                say(f"{design:>12} {name:>14}: {seconds:6.2f}s ({n / seconds:>9,.0f} rows/s), "
                    f"own {own / n * 1e6:.2f} us/row")  # fmt: skip
        finally:
            spark.stop()
    best = {k: v["seconds"] for k, v in figures.items()}
    worker_sink = best["worker rules: sink"]
    return {
        "messages": n,
        "repeat": args.repeat,
        "to_python_rows_bound_over_bytes_per_row": best[f"worker rules: {SIZED_PER_ROW}"]
        / best["worker rules: to python"],
        **{f"worker_sink_{name.split(', ')[1].replace(' ', '_')}": best[f"worker rules: {name}"]
           / worker_sink for name in (SINK_SIZED_PER_ROW, SINK_FEW_ROWS)},
        "worker_over_spark_rules": best["spark rules: sink"] / worker_sink,
        "stages": figures,
    }  # fmt: skip


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def rows(f: dict[str, Any]) -> list[Cells]:
    s = f["stages"]
    own = "; ".join(f"{name.split(': ')[1]} {v['own_us_per_row']:.2f}" for name, v in s.items()
                    if name.startswith(("spark rules", "worker rules")))  # fmt: skip
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


SCENARIO = Scenario(
    "stages",
    __doc__ or "",
    run,
    flags={"messages": 1_000_000, "repeat": 3},
    quick={"messages": 20_000, "repeat": 1},
    rows=rows,
    on_both=True,
)

if __name__ == "__main__":
    SCENARIO.main()
