"""A micro-batch's dead letters become the table's rows in one place (`dead_letters.rows`)."""

from __future__ import annotations

import datetime

from clickstream_pipeline.core.schema import DEAD_LETTER_SCHEMA
from clickstream_pipeline.ingest import dead_letters


def test_the_sinks_dead_letters_become_table_rows_with_batch_and_query(spark):
    stamp = datetime.datetime(2026, 1, 2, 3, 4, 5)
    routed = spark.createDataFrame(
        [("dead", b"k", b"{broken", "t", 3, 41, stamp, "malformed_json", 9)],
        "kind string, raw_key binary, raw_value binary, topic string, partition int, "
        "offset long, kafka_timestamp timestamp, reason string, rows_in long",
    )
    (row,) = dead_letters.rows(routed, batch_id=7, query_name="q").collect()
    assert list(row.asDict()) == [f.name for f in DEAD_LETTER_SCHEMA if f.name != "replayed_at"]
    assert (row.raw_key, row.raw_value, row.topic, row.partition, row.offset) == (
        b"k",
        b"{broken",
        "t",
        3,
        41,
    )
    assert (row.kafka_timestamp, row.reason, row.batch_id, row.query_name) == (
        stamp,
        "malformed_json",
        7,
        "q",
    )
    assert row.dead_lettered_at is not None


def test_compaction_rewrites_the_small_files_into_one_and_deletes_the_old_ones(spark, tmp_path):
    path = str(tmp_path / "dead_letters")
    dead_letters.ensure_table(spark, path)
    routed = spark.createDataFrame(
        [("dead", b"k", b"{broken", "t", 0, n, None, "malformed_json", 1) for n in range(3)],
        "kind string, raw_key binary, raw_value binary, topic string, partition int, "
        "offset long, kafka_timestamp timestamp, reason string, rows_in long",
    ).coalesce(1)
    for batch in range(4):  # one small file per micro-batch
        dead_letters.append(path, dead_letters.rows(routed, batch, "q"), "app", batch)
    # the unreferenced files are deleted at once here; the job keeps them 168 h by default
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        assert dead_letters.compact(spark, path, retain_hours=0) == (4, 1)
    finally:
        spark.conf.unset("spark.databricks.delta.retentionDurationCheck.enabled")
    on_disk = [
        p for p in (tmp_path / "dead_letters").rglob("*.parquet") if "_delta_log" not in p.parts
    ]
    assert len(on_disk) == 1
    assert dead_letters.read(spark, path).count() == 12  # every letter kept
