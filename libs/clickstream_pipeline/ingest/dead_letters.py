"""The dead-letter store: a Delta table of records that could not become events rows.

Each row keeps the raw Kafka key and value (bytes), the record's topic, partition, offset and
timestamp, the micro-batch id, the query name and the reason (the rule it broke, or the
database's error). Each micro-batch appends with Delta's idempotent-write options (`txnAppId`
= the streaming query's id, stable across restarts from one checkpoint; `txnVersion` = the
batch id), so a replayed micro-batch adds nothing twice.
"""

from __future__ import annotations

from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickstream_pipeline.core.schema import DEAD_LETTER_SCHEMA
from clickstream_pipeline.core.spark import session_conf_set

KEY = ("query_name", "topic", "partition", "offset")
# VACUUM lists the table's folders in this many tasks: Spark's default, 10,000, took 26 s of
# a 3 s VACUUM of a small table on a 2-core local session; the session's shuffle partitions
# suit a table this size
LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"


def ensure_table(spark: SparkSession, path: str) -> None:
    """Create the table unless its Delta log is there (checked without a Spark job)."""
    if not _has_delta_log(spark, path):
        # SQL rather than the DeltaTable builder: Spark Connect runs it without Delta's plugin
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in DEAD_LETTER_SCHEMA)
        location = path.replace("`", "``")
        spark.sql(f"CREATE TABLE IF NOT EXISTS delta.`{location}` ({columns}) USING delta")


def _has_delta_log(spark: SparkSession, path: str) -> bool:
    try:
        jvm: Any = spark.sparkContext._jvm
        log = jvm.org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/_delta_log")
        fs = log.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        return bool(fs.exists(log))
    except Exception:  # Spark Connect (no JVM here): let Delta decide
        return False


def rows(dead: DataFrame, batch_id: int, query_name: str) -> DataFrame:
    """The table's rows (`DEAD_LETTER_SCHEMA` without `replayed_at`) from a micro-batch's dead
    letters as the sink returns them (the record's key, value, position, timestamp, reason)."""
    filled = {
        "batch_id": F.lit(batch_id).cast("bigint"),
        "query_name": F.lit(query_name),
        "dead_lettered_at": F.current_timestamp(),
    }
    return dead.select(
        *(
            filled[f.name].alias(f.name) if f.name in filled else F.col(f.name)
            for f in DEAD_LETTER_SCHEMA
            if f.name != "replayed_at"
        )
    )


def append(path: str, dead: DataFrame, app_id: str, batch_id: int) -> None:
    """Append a micro-batch's dead letters once: Delta skips a (app_id, batch_id) seen before."""
    (
        dead.withColumn("replayed_at", F.lit(None).cast("timestamp"))
        .write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", batch_id)
        .save(path)
    )


def read(spark: SparkSession, path: str, include_replayed: bool = False) -> DataFrame:
    table = spark.read.format("delta").load(path)
    return table if include_replayed else table.filter(F.col("replayed_at").isNull())


def _of(spark: SparkSession, path: str, query_name: str | None, reason: str | None) -> DataFrame:
    letters = read(spark, path)
    if query_name is not None:
        letters = letters.filter(F.col("query_name") == query_name)
    return letters if reason is None else letters.filter(F.col("reason") == reason)


def summary(
    spark: SparkSession, path: str, query_name: str | None = None, reason: str | None = None
) -> list[tuple[str, int]]:
    """(reason, count) of the dead letters not yet replayed, most frequent first."""
    rows = _of(spark, path, query_name, reason).groupBy("reason").count()
    return [(r["reason"], r["count"]) for r in rows.orderBy(F.desc("count"), "reason").collect()]


def sample(
    spark: SparkSession, path: str, query_name: str | None, reason: str | None, limit: int
) -> list[str]:
    """The first `limit` by position, one line each: topic/partition@offset, reason, value."""
    lines = []
    rows = _of(spark, path, query_name, reason).orderBy("topic", "partition", "offset")
    for row in rows.limit(limit).collect():
        raw = bytes(row["raw_value"] or b"")
        preview = raw[:80].decode("utf-8", "backslashreplace").encode("unicode_escape").decode()
        lines.append(
            f"{row['topic']}/{row['partition']}@{row['offset']}  {row['reason']}  {preview}"
        )
    return lines


def mark_replayed(spark: SparkSession, path: str, replayed: DataFrame) -> None:
    condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in KEY)
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(replayed.select(*KEY).alias("s"), condition)
        .whenMatchedUpdate(set={"replayed_at": "current_timestamp()"})
        .execute()
    )


def compact(spark: SparkSession, path: str, retain_hours: float) -> tuple[int, int]:
    """Rewrite the table's small files (one per micro-batch with dead letters) into few, then
    delete the files it no longer references that are older than `retain_hours` (Delta's
    OPTIMIZE and VACUUM). Returns its file count before and after."""
    table = DeltaTable.forPath(spark, path)

    def files() -> int:
        (count,) = table.detail().select("numFiles").head(1)[0]
        return int(count)

    before = files()
    table.optimize().executeCompaction()
    unset = spark.conf.get(LISTING_PARALLELISM, None) in (None, "10000")
    tasks = spark.conf.get("spark.sql.shuffle.partitions", None) if unset else None
    with session_conf_set(spark, LISTING_PARALLELISM, tasks):
        table.vacuum(retain_hours)
    return before, files()
