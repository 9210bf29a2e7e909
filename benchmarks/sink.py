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

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from benchmarks.common import DbCpuMeter, psql_copy, tree_cpu_s
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
from clickstream_pipeline.core.schema import EVENT_COLUMNS, ROUTED_SCHEMA
from clickstream_pipeline.core.spark import build_spark
from clickstream_pipeline.ingest.sink import SinkSettings, to_csv, write_and_route
from clickstream_pipeline.warehouse.database import ConnectionParams, connect, fetch
from devkit.db import execute

BASELINES = {  # run key: its name in the table
    "ours_csv": "our CSV path",
    "jdbc": "Spark JDBC",
    "lab": "lab INSERT per row",
    "copy_1": "`\\copy` 1 stream",
    "copy_2": "`\\copy` 2 streams",
}


def prepare(spark: SparkSession, rows: int, partitions: int) -> DataFrame:
    """Validated-shaped rows (as `transforms.validate` gives them), cached and counted."""
    pick = "element_at(array({}), cast(floor(rand({}) * {}) as int) + 1) AS {}"
    df = (
        spark.range(0, rows, 1, partitions)
        .selectExpr(
            "current_timestamp() - make_interval(0, 0, 0, 0, 0, 0, id % 1800) AS event_time",
            "cast(floor(rand(1) * 1000) + 1 AS bigint) AS customer_id",
            pick.format("'click','buy','scroll','download'", 2, 4, "event_type"),
            pick.format(
                "'United States','United Kingdom','India','France','Germany','China','China'",
                3,
                7,
                "country",
            ),
            pick.format("'chrome','firefox','safari','opera'", 4, 4, "browser"),
            "cast(floor(rand(5) * 10000) + 1 AS bigint) AS device_id",
            "cast(floor(rand(6) * 100000) + 1 AS bigint) AS session_id",
            "'bench-sink' AS kafka_topic",
            f"cast(floor(id / {-(-rows // partitions)}) AS int) AS kafka_partition",
            "id AS kafka_offset",
            "id + 1 AS source_event_id",
            "current_timestamp() AS kafka_timestamp",
            "cast(NULL AS string) AS reject_reason",
            "cast(NULL AS binary) AS raw_key",
            "cast(NULL AS binary) AS raw_value",
        )
        .cache()
    )
    say(f"prepared {df.count():,} rows in {partitions} partitions")
    return df


def reset(db: ConnectionParams) -> None:
    execute(db, "TRUNCATE events, clickstream_ingest_ledger", "CHECKPOINT")


def measure(name: str, db: ConnectionParams, rows: int, run: Any) -> dict[str, Any]:
    """Truncate, run `run()` under the CPU meter, check the row count; rows/s and CPU/row."""
    reset(db)
    say(f"{name}: writing {rows:,} rows")
    with DbCpuMeter(db) as meter:
        started, client_started = time.perf_counter(), tree_cpu_s(os.getpid())
        run()
        seconds = time.perf_counter() - started
        client_s = tree_cpu_s(os.getpid()) - client_started
    ((written,),) = fetch(db, "SELECT count(*) FROM events")
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
    say(f"{name}: {figures['rows_per_s']:,.0f} rows/s, {figures['db_cpu_us_per_row']:.2f} us/row")
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


def _arrow_to_python(csv: bool) -> Callable[[Iterable[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = pa.Table.from_batches(list(batches))
        if csv and table.num_rows:
            to_csv(table.select(list(EVENT_COLUMNS)))
        yield pa.RecordBatch.from_pylist([{"n": table.num_rows}])

    return run


def phases(df: DataFrame, rows: int) -> dict[str, float]:
    """Where our sink's time goes: Spark -> Arrow -> Python alone, then with the CSV writing."""
    out = {}
    for name, csv in (("arrow_to_python", False), ("arrow_to_python_csv", True)):
        started = time.perf_counter()
        df.mapInArrow(_arrow_to_python(csv), "n long").collect()
        out[f"{name}_rows_per_s"] = rows / (time.perf_counter() - started)
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
            out.write(part.read_bytes())
    return target


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg, secrets = setup_env(args.env)
    spark = build_spark(cfg, secrets)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    n = args.rows
    try:
        with scratch_database(db_params(secrets), "bench_sink") as db:
            df = prepare(spark, n, args.partitions)
            lab_rows = [tuple(r) for r in df.select(*EVENT_COLUMNS).limit(args.lab_rows).collect()]
            parts = export_csv(df, tmp, 2)
            warm_up(df, db)
            whole = concat(parts, tmp / "all.csv")
            contenders: dict[str, tuple[int, Any]] = {
                "ours": (n, lambda: ours(df, db, n)),
                "ours_csv": (n, lambda: ours(df, db, n, copy_format="csv")),
                "jdbc": (n, lambda: jdbc(df, db)),
                "lab": (len(lab_rows), lambda: lab_insert(lab_rows, db)),
                "copy_1": (n, lambda: psql_copy(db, EVENT_COLUMNS, [whole])),
                "copy_2": (n, lambda: psql_copy(db, EVENT_COLUMNS, parts)),
            }
            runs = {
                key: measure(key, db, rows, action) for key, (rows, action) in contenders.items()
            }
            reset(db)
            phase_figures = phases(df, n)
    finally:
        spark.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    runs["lab"]["scaled_seconds_for_rows"] = n / runs["lab"]["rows_per_s"]
    o = runs["ours"]
    return {
        "rows": n,
        "phases": phase_figures,
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
        Target("db_cpu_per_row_le_0.6x_jdbc", c["ours_cpu_per_row_over_jdbc"], "<=", 0.6,
               "<= 0.6x"),
    ]  # fmt: skip


def rows(f: dict[str, Any]) -> list[Cells]:
    r, q, c = f["runs"], f["ratios"], f["cpu_ratios"]

    def speed(k: str) -> Cells:
        ratio = q[f"ours_over_{k}"]
        return [
            f"{BASELINES[k]} {n0(r[k]['rows_per_s'])} rows/s",
            f"{ratio:.{0 if k == 'lab' else 2}f}x",
        ]

    def cpu(k: str) -> Cells:
        us = r[k]["db_cpu_us_per_row_own"]
        return [
            f"{BASELINES[k]} {us:.{1 if k == 'lab' else 2}f} us",
            f"{c[f'ours_cpu_per_row_over_{k}']:.2f}x",
        ]

    return [
        [f"sink, {f['rows']:,} rows", f"ours {n0(r['ours']['rows_per_s'])} rows/s", *speed("jdbc"),
         verdict(f, "rows_per_s_ge_jdbc", "rows_per_s_ge_1.5x_jdbc_stretch")],
        *(["", "", *speed(k), ""] for k in ("ours_csv", "lab", "copy_1", "copy_2")),
        ["sink, DB CPU per row", f"ours {r['ours']['db_cpu_us_per_row_own']:.2f} us",
         *cpu("copy_1"), verdict(f, "db_cpu_per_row_le_copy")],
        ["", "", *cpu("ours_csv"), ""],
        ["", "", *cpu("jdbc"), verdict(f, "db_cpu_per_row_le_0.6x_jdbc")],
        ["", "", *cpu("lab"), ""],
    ]  # fmt: skip


def headline(f: dict[str, Any], citus: dict[str, Any] | None) -> Cells:
    r = f["runs"]
    on_citus = f" ({citus['ratios']['ours_over_jdbc']:.2f}x on Citus)" if citus else ""
    return [
        f"sink, {millions(f['rows'])} rows into partitioned `events`",
        f"{n0(r['ours']['rows_per_s'])} rows/s, {r['ours']['db_cpu_us_per_row_own']:.2f} us DB "
        "CPU a row",
        f"Spark JDBC writer {n0(r['jdbc']['rows_per_s'])} rows/s, "
        f"{r['jdbc']['db_cpu_us_per_row_own']:.2f} us",
        f"{f['ratios']['ours_over_jdbc']:.2f}x{on_citus}",
    ]


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--lab-rows", type=int, default=20_000, help="slice for the lab's sink")
    parser.add_argument("--partitions", type=int, default=4, help="tasks (Kafka partitions)")


SCENARIO = Scenario(
    "sink",
    __doc__ or "",
    run,
    quick={"rows": 20_000, "lab_rows": 500},
    arguments=arguments,
    targets=targets,
    rows=rows,
    on_both=True,
    headline=headline,
)

if __name__ == "__main__":
    SCENARIO.main()
