"""Sink throughput: one prepared DataFrame written into `events` four ways, same run, same rows.

A cached DataFrame of validated-shaped rows (the lab's uniform draws, as `transforms.validate`
outputs them; each Spark partition one contiguous "Kafka" offset range, as in streaming) goes
into a bootstrapped, partitioned `events` table of a scratch database, truncated between runs:

(a) our sink: `mapInArrow(write_and_route(...))`, each task's Arrow batches streamed into one
    binary COPY (ADBC) with its ledger rows; (a') the same sink forced onto its CSV path;
(b) Spark's JDBC writer, `batchsize` 10000, `reWriteBatchedInserts=true`, the same columns;
(c) the lab's sink: one INSERT per row, autocommit (a slice, scaled: rows/s);
(d) `psql \\copy` of the same rows as CSV, one stream and two streams.

For each: rows/s and the database server's CPU seconds per row (postmaster children's user and
system CPU plus their reaped children's, read with psutil; `own` counts only this database's
backends and the shared writers, so other work on the same server is left out).

Run: `.venv/bin/python -m benchmarks.sink [--rows 2000000] [--quick]`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from benchmarks.common import (
    DbCpuMeter,
    benchmark_parser,
    finish,
    machine_facts,
    psql_copy,
    say,
    scratch_database,
    setup_env,
    tree_cpu_s,
)
from clickstream_pipeline.core.schema import EVENT_COLUMNS, ROUTED_SCHEMA
from clickstream_pipeline.core.spark import build_spark
from clickstream_pipeline.ingest.sink import SinkSettings, to_csv, write_and_route
from clickstream_pipeline.warehouse.database import ConnectionParams, connect, fetch
from devkit.db import execute


def prepare(spark: SparkSession, rows: int, partitions: int) -> DataFrame:
    """Validated-shaped rows (as `transforms.validate` gives them), cached and counted."""
    per = -(-rows // partitions)
    pick = "element_at(array({}), cast(floor(rand({}) * {}) as int) + 1)"
    df = (
        spark.range(0, rows, 1, partitions)
        .select(
            (F.current_timestamp() - F.expr("make_interval(0,0,0,0,0,0, id % 1800)")).alias(
                "event_time"
            ),
            (F.floor(F.rand(1) * 1000) + 1).cast("bigint").alias("customer_id"),
            F.expr(pick.format("'click','buy','scroll','download'", 2, 4)).alias("event_type"),
            F.expr(
                pick.format(
                    "'United States','United Kingdom','India','France','Germany','China','China'",
                    3,
                    7,
                )
            ).alias("country"),
            F.expr(pick.format("'chrome','firefox','safari','opera'", 4, 4)).alias("browser"),
            (F.floor(F.rand(5) * 10000) + 1).cast("bigint").alias("device_id"),
            (F.floor(F.rand(6) * 100000) + 1).cast("bigint").alias("session_id"),
            F.lit("bench-sink").alias("kafka_topic"),
            F.floor(F.col("id") / per).cast("int").alias("kafka_partition"),
            F.col("id").alias("kafka_offset"),
            (F.col("id") + 1).alias("source_event_id"),
            F.current_timestamp().alias("kafka_timestamp"),
            F.lit(None).cast("string").alias("reject_reason"),
            F.lit(None).cast("binary").alias("raw_key"),
            F.lit(None).cast("binary").alias("raw_value"),
        )
        .cache()
    )
    started = time.perf_counter()
    n = df.count()
    say(f"prepared {n:,} rows in {partitions} partitions in {time.perf_counter() - started:.1f}s")
    return df


def reset(db: ConnectionParams) -> None:
    execute(db, "TRUNCATE events, clickstream_ingest_ledger", "CHECKPOINT")


def count_events(db: ConnectionParams) -> int:
    return int(fetch(db, "SELECT count(*) FROM events")[0][0])


def measure(name: str, db: ConnectionParams, rows: int, run: Any) -> dict[str, Any]:
    """Truncate, run `run()` under the CPU meter, check the row count; rows/s and CPU/row."""
    reset(db)
    say(f"{name}: writing {rows:,} rows")
    with DbCpuMeter(db) as meter:
        started, client_started = time.perf_counter(), tree_cpu_s(os.getpid())
        run()
        seconds = time.perf_counter() - started
        client_s = tree_cpu_s(os.getpid()) - client_started
    written = count_events(db)
    if written != rows:
        raise RuntimeError(f"{name}: {written} rows in events, expected {rows}")
    cpu = meter.reading
    figures = {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": rows / seconds,
        "db_cpu_s": round(cpu.total_s, 3),
        "db_cpu_s_own": round(cpu.own_s, 3),
        "db_cpu_s_foreign": round(cpu.foreign_s, 3),
        "db_cpu_us_per_row": cpu.total_s / rows * 1e6,
        "db_cpu_us_per_row_own": cpu.own_s / rows * 1e6,
        # this process and its children: Spark's JVM, its Python workers, psql
        "client_cpu_us_per_row": client_s / rows * 1e6,
        "total_cpu_us_per_row": (client_s + cpu.own_s) / rows * 1e6,
    }
    say(
        f"{name}: {rows:,} rows in {seconds:.2f}s = {figures['rows_per_s']:,.0f} rows/s; "
        f"db CPU {cpu.total_s:.2f}s ({figures['db_cpu_us_per_row']:.2f} us/row; own "
        f"{figures['db_cpu_us_per_row_own']:.2f} us/row, other databases {cpu.foreign_s:.2f}s); "
        f"client CPU {figures['client_cpu_us_per_row']:.2f} us/row"
    )
    return figures


def ours(
    df: DataFrame,
    db: ConnectionParams,
    expected: int,
    sink: str = "bench-sink",
    copy_format: Literal["binary", "csv"] = "binary",
) -> None:
    settings = SinkSettings(
        connect_kwargs=db.psycopg_kwargs("bench-sink", 10),
        schema_name="public",
        table_name="events",
        sink=sink,
        batch_id=0,
        copy_format=copy_format,
    )
    stats = df.mapInArrow(write_and_route(settings), ROUTED_SCHEMA).collect()
    written = sum(r["written"] or 0 for r in stats if r["kind"] == "stats")
    if written != expected:
        raise RuntimeError(f"our sink wrote {written} rows, expected {expected}")


def _count_only(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    n = sum(b.num_rows for b in batches)
    yield pa.RecordBatch.from_pylist([{"n": n}])


def _csv_only(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    table = pa.Table.from_batches(list(batches))
    size = len(to_csv(table.select(list(EVENT_COLUMNS))).getbuffer()) if table.num_rows else 0
    yield pa.RecordBatch.from_pylist([{"n": size}])


def phases(df: DataFrame, rows: int) -> dict[str, float]:
    """Where our sink's time goes: Spark -> Arrow -> Python alone, then with the CSV writing."""
    out = {}
    for name, fn in (("arrow_to_python", _count_only), ("arrow_to_python_csv", _csv_only)):
        started = time.perf_counter()
        df.mapInArrow(fn, "n long").collect()
        seconds = time.perf_counter() - started
        out[f"{name}_rows_per_s"] = rows / seconds
        say(f"phase {name}: {rows:,} rows in {seconds:.2f}s = {rows / seconds:,.0f} rows/s")
    return out


def warm_up(df: DataFrame, db: ConnectionParams) -> None:
    """Start the Python workers and load the JDBC driver before anything is timed."""
    started = time.perf_counter()
    small = df.limit(2000).cache()
    small.count()
    ours(small, db, 2000, sink="bench-warm-up")
    jdbc(small, db)
    small.unpersist()
    reset(db)
    say(f"warm-up (Python workers, JDBC driver) in {time.perf_counter() - started:.1f}s")


def jdbc(df: DataFrame, db: ConnectionParams) -> None:
    props = {**db.jdbc_properties(), "batchsize": "10000", "reWriteBatchedInserts": "true"}
    df.select(*EVENT_COLUMNS).write.jdbc(db.jdbc_url(), "events", mode="append", properties=props)


def lab_insert(rows: list[tuple[Any, ...]], db: ConnectionParams) -> None:
    """The lab's ForeachWriter: one INSERT per row, autocommit (parameters, not concatenation)."""
    conn = connect(db, "bench-lab")
    conn.autocommit = True
    columns, values = ", ".join(EVENT_COLUMNS), ", ".join(["%s"] * len(EVENT_COLUMNS))
    statement = f"INSERT INTO events ({columns}) VALUES ({values})"  # noqa: S608
    try:
        with conn.cursor() as cur:
            for row in rows:
                cur.execute(statement, row)
    finally:
        conn.close()


def export_csv(df: DataFrame, folder: Path, files: int) -> list[Path]:
    """The same rows as CSV files (`files` of them), as psql \\copy reads them."""
    started = time.perf_counter()
    spark_dir = folder / "spark"
    df.select(*EVENT_COLUMNS).coalesce(files).write.option(
        "timestampFormat", "yyyy-MM-dd HH:mm:ss.SSSSSSXXX"
    ).csv(str(spark_dir))
    parts = sorted(spark_dir.glob("part-*.csv"))
    say(f"exported {len(parts)} CSV files in {time.perf_counter() - started:.1f}s")
    return parts


def concat(parts: list[Path], target: Path) -> Path:
    with target.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 20)
    return target


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = benchmark_parser(__doc__, "100,000 rows, lab slice 2,000")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--lab-rows", type=int, default=20_000, help="slice for the lab's sink")
    parser.add_argument("--partitions", type=int, default=4, help="tasks (Kafka partitions)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.lab_rows = 100_000, 2_000
    cfg, secrets = setup_env(args.env)
    from benchmarks.common import db_params

    results: dict[str, Any] = {"machine": machine_facts(), "rows": args.rows}
    spark = build_spark(cfg, secrets)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    try:
        with scratch_database(db_params(secrets), "bench_sink") as db:
            df = prepare(spark, args.rows, args.partitions)
            lab_rows = [tuple(r) for r in df.select(*EVENT_COLUMNS).limit(args.lab_rows).collect()]
            parts = export_csv(df, tmp, 2)
            warm_up(df, db)
            whole = concat(parts, tmp / "all.csv")
            runs: dict[str, dict[str, Any]] = {}
            runs["ours"] = measure(
                "ours (mapInArrow, binary COPY)", db, args.rows, lambda: ours(df, db, args.rows)
            )
            runs["ours_csv"] = measure(
                "ours, CSV path (mapInArrow, CSV COPY)",
                db,
                args.rows,
                lambda: ours(df, db, args.rows, copy_format="csv"),
            )
            runs["jdbc"] = measure("Spark JDBC writer", db, args.rows, lambda: jdbc(df, db))
            runs["lab"] = measure(
                "lab sink (INSERT per row)", db, len(lab_rows), lambda: lab_insert(lab_rows, db)
            )
            runs["copy_1"] = measure(
                "psql \\copy, 1 stream",
                db,
                args.rows,
                lambda: psql_copy(db, EVENT_COLUMNS, [whole]),
            )
            runs["copy_2"] = measure(
                "psql \\copy, 2 streams", db, args.rows, lambda: psql_copy(db, EVENT_COLUMNS, parts)
            )
            reset(db)
            results["phases"] = phases(df, args.rows)
    finally:
        spark.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    runs["lab"]["scaled_seconds_for_rows"] = args.rows / runs["lab"]["rows_per_s"]
    o = runs["ours"]
    ratios = {
        f"ours_over_{k}": o["rows_per_s"] / runs[k]["rows_per_s"]
        for k in ("ours_csv", "jdbc", "lab", "copy_1", "copy_2")
    }
    cpu = {
        f"ours_cpu_per_row_over_{k}": o["db_cpu_us_per_row_own"] / runs[k]["db_cpu_us_per_row_own"]
        for k in ("ours_csv", "jdbc", "lab", "copy_1", "copy_2")
    }
    results.update({"runs": runs, "ratios": ratios, "cpu_ratios": cpu})
    targets = {
        "db_cpu_per_row_le_copy": cpu["ours_cpu_per_row_over_copy_1"] <= 1.0,
        "db_cpu_per_row_le_0.6x_jdbc": cpu["ours_cpu_per_row_over_jdbc"] <= 0.6,
        "rows_per_s_ge_jdbc": ratios["ours_over_jdbc"] >= 1.0,
        "rows_per_s_ge_1.5x_jdbc_stretch": ratios["ours_over_jdbc"] >= 1.5,
    }
    results["targets"] = targets
    print()
    print(
        f"{'method':<28}{'rows/s':>12}{'db CPU us/row':>15}{'own us/row':>12}"
        f"{'client us/row':>15}{'total us/row':>14}"
    )
    for key, label in (
        ("ours", "(a) ours"),
        ("ours_csv", "(a') ours, CSV path"),
        ("jdbc", "(b) Spark JDBC"),
        ("lab", "(c) lab INSERT/row"),
        ("copy_1", "(d) psql \\copy x1"),
        ("copy_2", "(d) psql \\copy x2"),
    ):
        r = runs[key]
        print(
            f"{label:<28}{r['rows_per_s']:>12,.0f}{r['db_cpu_us_per_row']:>15.2f}"
            f"{r['db_cpu_us_per_row_own']:>12.2f}{r['client_cpu_us_per_row']:>15.2f}"
            f"{r['total_cpu_us_per_row']:>14.2f}"
        )
    for key, value in ratios.items():
        print(f"rows/s ratio {key}: {value:.2f}")
    for key, value in cpu.items():
        print(f"db CPU/row ratio {key}: {value:.2f}")
    for key, ok in targets.items():
        print(f"target {key}: {'met' if ok else 'MISSED'}")
    return finish("sink", args, results)


if __name__ == "__main__":
    main()
