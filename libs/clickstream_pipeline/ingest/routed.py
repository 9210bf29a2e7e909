"""What a sink task returns: rows of the routed schema (`ROUTED_SCHEMA`), kind "dead" (the
record and its reason), "undecided" (a raw record left to Spark's rules), "stats" (one row
per Kafka partition: counts, offsets, timestamps) or "tenant" (one row per customer of a
partition written: rows and timestamps, for freshness per tenant), and the helpers that split
a task's rows by Kafka partition."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.pandas.types import to_arrow_schema

from clickstream_pipeline.core.schema import ROUTED_SCHEMA

ROUTED_ARROW_SCHEMA = to_arrow_schema(ROUTED_SCHEMA)


# what `route_outputs` takes for a partition with nothing to write
NOTHING_WRITTEN: dict[str, Any] = {
    "written": 0,
    "duplicates": 0,
    "rejected_offsets": [],
    "rejected_errors": [],
    "attempts": 0,
    "seconds": 0.0,
}


def partitions_of(
    table: pa.Table, topic_column: str = "kafka_topic", partition_column: str = "kafka_partition"
) -> Iterator[tuple[str, int, pa.Table]]:
    """(topic, partition, rows) for each Kafka partition in `table`."""
    names = [topic_column, partition_column]
    keys = table.select(names).group_by(names).aggregate([])
    if keys.num_rows == 1:
        yield keys.column(0)[0].as_py(), keys.column(1)[0].as_py(), table
        return
    for topic, partition in zip(
        keys.column(0).to_pylist(), keys.column(1).to_pylist(), strict=True
    ):
        mask = pc.and_(
            pc.equal(table.column(topic_column), topic),
            pc.equal(table.column(partition_column), partition),
        )
        yield topic, partition, table.filter(mask)


def valid_rows_of(rows: pa.Table) -> pa.Table:
    reasons = rows.column("reject_reason")
    if reasons.null_count == len(reasons):
        return rows  # no copy when every row is valid, the common case
    return rows.filter(pc.is_null(reasons))


def route_outputs(
    topic: str,
    partition: int,
    rows: pa.Table,
    written: dict[str, Any],
    valid: pa.Table | None = None,
) -> Iterator[pa.RecordBatch]:
    """One Kafka partition's dead letters (invalid or refused rows), its statistics row and,
    given its `valid` rows, its rows per customer."""
    invalid = pc.is_valid(rows.column("reject_reason"))
    dead = rows.filter(invalid)
    rejected = dict(zip(written["rejected_offsets"], written["rejected_errors"], strict=True))
    if dead.num_rows:
        yield dead_batch(dead, dead.column("reject_reason"), with_raw=True)
    if rejected:
        # raw key and value are filled in by the driver from the micro-batch
        refused = rows.filter(
            pc.is_in(rows.column("kafka_offset"), pa.array(list(rejected), pa.int64()))
        )
        reasons = [rejected[o] for o in refused.column("kafka_offset").to_pylist()]
        yield dead_batch(refused, pa.array(reasons, pa.string()), with_raw=False)
    offsets, stamps = rows.column("kafka_offset"), rows.column("kafka_timestamp")
    stats = {
        "kind": "stats",
        "topic": topic,
        "partition": partition,
        "rows_in": rows.num_rows,
        "written": written["written"],
        "duplicates": written["duplicates"],
        "dead": dead.num_rows + len(rejected),
        "db_rejected": len(rejected),
        "undecided": 0,
        "first_offset": pc.min(offsets).as_py(),
        "last_offset": pc.max(offsets).as_py(),
        "oldest": pc.min(stamps).as_py(),
        "newest": pc.max(stamps).as_py(),
        "attempts": written["attempts"],
        "seconds": written["seconds"],
    }
    yield pa.RecordBatch.from_pylist([stats], schema=ROUTED_ARROW_SCHEMA)
    if valid is not None and written["written"] and not written["duplicates"]:
        yield tenant_batch(topic, partition, valid)  # (a replay's delays mean nothing)


def tenant_batch(topic: str, partition: int, valid: pa.Table) -> pa.RecordBatch:
    """Per customer of one partition's valid rows: how many, oldest and newest Kafka timestamp."""
    per = valid.group_by("customer_id").aggregate(
        [("kafka_timestamp", "count"), ("kafka_timestamp", "min"), ("kafka_timestamp", "max")]
    )
    n = per.num_rows
    return routed_batch(
        n,
        kind=pa.array(["tenant"] * n),
        topic=pa.array([topic] * n),
        partition=pa.array([partition] * n),
        customer_id=per.column("customer_id"),
        rows_in=per.column("kafka_timestamp_count"),
        oldest=per.column("kafka_timestamp_min"),
        newest=per.column("kafka_timestamp_max"),
    )


def routed_batch(n: int, **columns: Any) -> pa.RecordBatch:
    """`n` rows of the routed schema: the columns given, nulls elsewhere."""
    arrays = []
    for f in ROUTED_ARROW_SCHEMA:
        column = columns.get(f.name)
        if column is None:
            arrays.append(pa.nulls(n, f.type))
        else:
            column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            arrays.append(column.cast(f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=ROUTED_ARROW_SCHEMA)


def dead_batch(rows: pa.Table, reasons: pa.Array, with_raw: bool) -> pa.RecordBatch:
    """Dead-letter rows of the routed schema from validated rows."""
    raw = {"raw_key": rows.column("raw_key"), "raw_value": rows.column("raw_value")}
    return routed_batch(
        rows.num_rows,
        kind=pa.array(["dead"] * rows.num_rows),
        topic=rows.column("kafka_topic"),
        partition=rows.column("kafka_partition"),
        offset=rows.column("kafka_offset"),
        kafka_timestamp=rows.column("kafka_timestamp"),
        reason=reasons,
        **(raw if with_raw else {}),
    )


def undecided_batches(raw: pa.Table) -> Iterator[pa.RecordBatch]:
    """Records left to Spark's rules, raw, and one statistics row per Kafka partition."""
    table = raw.rename_columns(
        {"key": "raw_key", "value": "raw_value", "timestamp": "kafka_timestamp"}
    ).select(["raw_key", "raw_value", "topic", "partition", "offset", "kafka_timestamp"])
    yield routed_batch(
        table.num_rows,
        kind=pa.array(["undecided"] * table.num_rows),
        **{name: table.column(name) for name in table.column_names},
    )
    for topic, partition, rows in partitions_of(table, "topic", "partition"):
        offsets = rows.column("offset")
        yield routed_batch(
            1,
            kind=pa.array(["stats"]),
            topic=pa.array([topic]),
            partition=pa.array([partition]),
            undecided=pa.array([rows.num_rows]),
            first_offset=pa.array([pc.min(offsets).as_py()]),
            last_offset=pa.array([pc.max(offsets).as_py()]),
            **{k: pa.array([0]) for k in ("rows_in", "written", "duplicates", "dead")},
        )
