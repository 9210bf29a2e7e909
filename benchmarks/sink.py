"""Sink throughput: one cached DataFrame of validated rows written into a scratch `events` six
ways in the same run: our sink (binary COPY, and its CSV path), Spark's JDBC writer, the lab's
INSERT per row (a slice) and `psql \\copy` (1 and 2 streams); rows/s and DB CPU per row."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pyspark.sql import DataFrame

from benchmarks.common import DbCpuMeter, expect_rows, psql_copy, tree_cpu_s, truncate
from benchmarks.harness import Scenario, Target, rate, say, scratch_db
from clickstream_pipeline.core.schema import EVENT_COLUMNS, ROUTED_SCHEMA
from clickstream_pipeline.core.spark import build_spark
from clickstream_pipeline.ingest.sink import SinkSettings, write_and_route
from clickstream_pipeline.warehouse.database import ConnectionParams, connect
from devkit.db import execute

BASELINES = ("ours_csv", "jdbc", "lab", "copy_1", "copy_2")  # the runs ours is compared with
PICK = "element_at(array({}), cast(floor(rand({}) * {}) as int) + 1) AS {}"
COUNTRIES = "'United States','United Kingdom','India','France','Germany','China','China'"
# validated rows as `transforms.validate` gives them; each Spark partition one "Kafka" range
COLUMNS = (
    "current_timestamp() - make_interval(0, 0, 0, 0, 0, 0, id % 1800) AS event_time",
    "cast(floor(rand(1) * 1000) + 1 AS bigint) AS customer_id",
    PICK.format("'click','buy','scroll','download'", 2, 4, "event_type"),
    PICK.format(COUNTRIES, 3, 7, "country"),
    PICK.format("'chrome','firefox','safari','opera'", 4, 4, "browser"),
    "cast(floor(rand(5) * 10000) + 1 AS bigint) AS device_id",
    "cast(floor(rand(6) * 100000) + 1 AS bigint) AS session_id",
    "'bench-sink' AS kafka_topic",
    "cast(floor(id / {per_partition}) AS int) AS kafka_partition",
    "id AS kafka_offset",
    "id + 1 AS source_event_id",
    "current_timestamp() AS kafka_timestamp",
    "cast(NULL AS string) AS reject_reason",
    "cast(NULL AS binary) AS raw_key",
    "cast(NULL AS binary) AS raw_value",
    "cast(NULL AS string) AS properties",
)
# What the baselines write: the same rows without `properties` (NULL either way; Spark's JDBC
# writer cannot bind a NULL string to jsonb)
BASELINE_COLUMNS = tuple(c for c in EVENT_COLUMNS if c != "properties")
Copy = Literal["binary", "csv"]


def measure(name: str, db: ConnectionParams, rows: int, write: Callable[[], Any]) -> dict:
    """Truncate, `write()` under the CPU meter, check the row count; rows/s and CPU per row."""
    truncate(db, "events", "clickstream_ingest_ledger")
    execute(db, "CHECKPOINT")
    say(f"{name}: writing {rows:,} rows")
    with DbCpuMeter(db) as meter:
        started, client_started = time.perf_counter(), tree_cpu_s(os.getpid())
        write()
        seconds = time.perf_counter() - started
        client_s = tree_cpu_s(os.getpid()) - client_started  # Spark's JVM and workers, psql
    expect_rows(db, rows, name)
    cpu, us = meter.reading, 1e6 / rows
    say(f"{name}: {rows / seconds:,.0f} rows/s, {cpu.total_s * us:.2f} us/row")
    return rate(
        rows,
        seconds,
        db_cpu_s=round(cpu.total_s, 3),
        db_cpu_s_own=round(cpu.own_s, 3),
        db_cpu_s_foreign=round(cpu.foreign_s, 3),
        db_cpu_us_per_row=cpu.total_s * us,
        db_cpu_us_per_row_own=cpu.own_s * us,
        client_cpu_us_per_row=client_s * us,
        total_cpu_us_per_row=(client_s + cpu.own_s) * us,
    )


def ours(
    df: DataFrame, db: ConnectionParams, n: int, sink: str = "bench-sink", copy: Copy = "binary"
) -> None:
    """Our sink's micro-batch function over every partition, its stats rows checked."""
    kwargs = db.psycopg_kwargs("bench-sink", 10)
    settings = SinkSettings(kwargs, "public", "events", sink, 0, copy_format=copy)
    stats = df.mapInArrow(write_and_route(settings), ROUTED_SCHEMA).collect()
    if (written := sum(r["written"] or 0 for r in stats if r["kind"] == "stats")) != n:
        raise RuntimeError(f"our sink wrote {written} rows, expected {n}")


def jdbc(df: DataFrame, db: ConnectionParams) -> None:
    props = {**db.jdbc_properties(), "batchsize": "10000", "reWriteBatchedInserts": "true"}
    df.select(*BASELINE_COLUMNS).write.jdbc(db.jdbc_url(), "events", "append", props)


def lab_insert(rows: list[tuple[Any, ...]], db: ConnectionParams) -> None:
    """The lab's ForeachWriter: one INSERT per row, autocommit (parameters, not concatenation)."""
    values = ", ".join(["%s"] * len(BASELINE_COLUMNS))
    statement = f"INSERT INTO events ({', '.join(BASELINE_COLUMNS)}) VALUES ({values})"  # noqa: S608
    with contextlib.closing(connect(db, "bench-lab")) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.executemany(statement, rows)  # psycopg2: one execute a row


def run(args: argparse.Namespace) -> dict[str, Any]:
    spark, n = build_spark(args.cfg, args.secrets), args.rows
    tmp = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    try:
        with scratch_db(args.secrets, "bench_sink") as db:
            per_partition = -(-n // args.partitions)
            columns = [c.format(per_partition=per_partition) for c in COLUMNS]
            df = spark.range(0, n, 1, args.partitions).selectExpr(*columns).cache()
            say(f"prepared {df.count():,} rows in {args.partitions} partitions")
            baseline = df.select(*BASELINE_COLUMNS)
            lab_rows = [tuple(r) for r in baseline.limit(args.lab_rows).collect()]
            baseline.coalesce(2).write.option(
                "timestampFormat", "yyyy-MM-dd HH:mm:ss.SSSSSSXXX"
            ).csv(str(tmp / "spark"))  # the same rows as CSV files, as psql \copy reads them
            parts = sorted((tmp / "spark").glob("part-*.csv"))
            (tmp / "all.csv").write_bytes(b"".join(part.read_bytes() for part in parts))
            small = df.limit(2000).cache()  # Python workers and the JDBC driver started untimed
            ours(small, db, small.count(), sink="bench-warm-up")
            jdbc(small, db)
            contenders: dict[str, tuple[int, Callable[[], Any]]] = {
                "ours": (n, lambda: ours(df, db, n)),
                "ours_csv": (n, lambda: ours(df, db, n, copy="csv")),
                "jdbc": (n, lambda: jdbc(df, db)),
                "lab": (len(lab_rows), lambda: lab_insert(lab_rows, db)),
                "copy_1": (n, lambda: psql_copy(db, BASELINE_COLUMNS, [tmp / "all.csv"])),
                "copy_2": (n, lambda: psql_copy(db, BASELINE_COLUMNS, parts)),
            }
            runs = {key: measure(key, db, rows, write) for key, (rows, write) in contenders.items()}
    finally:
        spark.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    runs["lab"]["scaled_seconds_for_rows"] = n / runs["lab"]["rows_per_s"]
    o = runs["ours"]
    return {
        "rows": n,
        "runs": runs,
        "ratios": {f"ours_over_{k}": o["rows_per_s"] / runs[k]["rows_per_s"] for k in BASELINES},
        "cpu_ratios": {
            f"ours_cpu_per_row_over_{k}": o["db_cpu_us_per_row_own"]
            / runs[k]["db_cpu_us_per_row_own"]
            for k in BASELINES
        },
    }


def targets(f: dict[str, Any]) -> list[Target]:
    q, c = f["ratios"], f["cpu_ratios"]
    return [
        Target("rows_per_s_ge_jdbc", q["ours_over_jdbc"], ">=", 1.0, ">= 1x"),
        Target("rows_per_s_ge_1.5x_jdbc_stretch", q["ours_over_jdbc"], ">=", 1.5, "1.5x"),
        Target("db_cpu_per_row_le_copy", c["ours_cpu_per_row_over_copy_1"], "<=", 1.0, "<= 1x"),
        Target(
            "db_cpu_per_row_le_0.6x_jdbc", c["ours_cpu_per_row_over_jdbc"], "<=", 0.6, "<= 0.6x"
        ),
    ]


SCENARIO = Scenario(
    "sink",
    __doc__ or "",
    run,
    flags={"rows": 2_000_000, "lab_rows": 20_000, "partitions": 4},  # lab's slice; tasks
    # big enough that each contender's server CPU spans many 10 ms clock ticks (20,000 rows and
    # 500 inserts measured none at times)
    quick={"rows": 100_000, "lab_rows": 2_000},
    targets=targets,
    rows=(
        "sink, {rows:,} rows | ours {runs[ours][rows_per_s]:,.0f} rows/s"
        " | Spark JDBC {runs[jdbc][rows_per_s]:,.0f} rows/s | {ratios[ours_over_jdbc]:.2f}x"
        " | {targets:rows_per_s_ge_jdbc; rows_per_s_ge_1.5x_jdbc_stretch}",
        "| | our CSV path {runs[ours_csv][rows_per_s]:,.0f} rows/s"
        " | {ratios[ours_over_ours_csv]:.2f}x",
        "| | lab INSERT per row {runs[lab][rows_per_s]:,.0f} rows/s | {ratios[ours_over_lab]:.0f}x",
        "| | `\\copy` 1 stream {runs[copy_1][rows_per_s]:,.0f} rows/s"
        " | {ratios[ours_over_copy_1]:.2f}x",
        "| | `\\copy` 2 streams {runs[copy_2][rows_per_s]:,.0f} rows/s"
        " | {ratios[ours_over_copy_2]:.2f}x",
        "sink, DB CPU per row | ours {runs[ours][db_cpu_us_per_row_own]:.2f} us"
        " | `\\copy` 1 stream {runs[copy_1][db_cpu_us_per_row_own]:.2f} us"
        " | {cpu_ratios[ours_cpu_per_row_over_copy_1]:.2f}x | {targets:db_cpu_per_row_le_copy}",
        "| | our CSV path {runs[ours_csv][db_cpu_us_per_row_own]:.2f} us"
        " | {cpu_ratios[ours_cpu_per_row_over_ours_csv]:.2f}x",
        "| | Spark JDBC {runs[jdbc][db_cpu_us_per_row_own]:.2f} us"
        " | {cpu_ratios[ours_cpu_per_row_over_jdbc]:.2f}x | {targets:db_cpu_per_row_le_0.6x_jdbc}",
        "| | lab INSERT per row {runs[lab][db_cpu_us_per_row_own]:.1f} us"
        " | {cpu_ratios[ours_cpu_per_row_over_lab]:.2f}x",
    ),
    on_both=True,
    headline="sink, {rows:M} rows into partitioned `events`"
    " | {runs[ours][rows_per_s]:,.0f} rows/s, {runs[ours][db_cpu_us_per_row_own]:.2f} us DB CPU"
    " a row | Spark JDBC writer {runs[jdbc][rows_per_s]:,.0f} rows/s,"
    " {runs[jdbc][db_cpu_us_per_row_own]:.2f} us | {ratios[ours_over_jdbc]:.2f}x",
    on_citus="{ratios[ours_over_jdbc]:.2f}x",
)

if __name__ == "__main__":
    SCENARIO.main()
