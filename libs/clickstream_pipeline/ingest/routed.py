"""What a sink task returns: rows of the routed schema (`ROUTED_SCHEMA`), kind "dead" (the
record and its reason), "undecided" (a raw record left to Spark's rules), "stats" (one row
per Kafka partition: counts, offsets, timestamps) or "tenant" (one row per customer of a
partition written: rows and timestamps, for freshness per tenant), and the helpers that split
a task's rows by Kafka partition."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.pandas.types import to_arrow_schema

from clickstream_pipeline.core.schema import ROUTED_SCHEMA
from clickstream_pipeline.ingest.spill import SpilledBatches, release_freed_memory

ROUTED_ARROW_SCHEMA = to_arrow_schema(ROUTED_SCHEMA)
RAW_COLUMNS = ["raw_key", "raw_value"]


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


class Received:
    """A task's validated rows as they arrive: every row without its raw key and value (the
    careful path and the statistics need them all, a few dozen bytes each), and the invalid
    ones as dead letters with their raw bytes, held by bytes (`SpilledBatches`)."""

    def __init__(self, memory_bytes: int) -> None:
        self.rows: list[pa.RecordBatch] = []
        self.dead = SpilledBatches(memory_bytes)

    def append(self, batch: pa.RecordBatch) -> None:
        invalid = pc.is_valid(batch.column("reject_reason"))
        if invalid.true_count:
            dead = batch.filter(invalid)
            self.dead.append(dead_batch(dead, dead.column("reject_reason"), with_raw=True))
        self.rows.append(batch.drop_columns(RAW_COLUMNS))
        release_freed_memory(batch)

    def extend(self, batches: Iterable[pa.RecordBatch]) -> None:
        for batch in batches:
            self.append(batch)

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.rows)


def route_outputs(
    topic: str,
    partition: int,
    rows: pa.Table,
    written: dict[str, Any],
    valid: pa.Table | None = None,
    invalid_sent: bool = False,
    tenant: str = "customer_id",
) -> Iterator[pa.RecordBatch]:
    """One Kafka partition's dead letters (invalid rows, unless `invalid_sent`: returned as they
    arrived, and refused rows), its statistics row and, given its `valid` rows, its rows per
    tenant (the model's `tenant` field, as `customer_id`)."""
    invalid = pc.is_valid(rows.column("reject_reason"))
    dead = rows.filter(invalid)
    rejected = dict(zip(written["rejected_offsets"], written["rejected_errors"], strict=True))
    if dead.num_rows and not invalid_sent:
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
        yield tenant_batch(topic, partition, valid, tenant)  # (a replay's delays mean nothing)


def tenant_batch(
    topic: str, partition: int, valid: pa.Table, tenant: str = "customer_id"
) -> pa.RecordBatch:
    """Per tenant of one partition's valid rows: how many, oldest and newest Kafka timestamp."""
    per = valid.group_by(tenant).aggregate(
        [("kafka_timestamp", "count"), ("kafka_timestamp", "min"), ("kafka_timestamp", "max")]
    )
    n = per.num_rows
    return routed_batch(
        n,
        kind=pa.array(["tenant"] * n),
        topic=pa.array([topic] * n),
        partition=pa.array([partition] * n),
        customer_id=per.column(tenant).cast(pa.int64()),
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


def dead_batch(
    rows: pa.Table | pa.RecordBatch, reasons: pa.Array | pa.ChunkedArray, with_raw: bool
) -> pa.RecordBatch:
    """Dead-letter rows of the routed schema from validated rows (`with_raw`: with their raw
    key and value; without, `rows` need not have them)."""
    raw = {name: rows.column(name) for name in RAW_COLUMNS} if with_raw else {}
    return routed_batch(
        rows.num_rows,
        kind=pa.array(["dead"] * rows.num_rows),
        topic=rows.column("kafka_topic"),
        partition=rows.column("kafka_partition"),
        offset=rows.column("kafka_offset"),
        kafka_timestamp=rows.column("kafka_timestamp"),
        reason=reasons,
        **raw,
    )


def undecided_batches(raw: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Records left to Spark's rules, raw, batch by batch as given, then one statistics row
    per Kafka partition."""
    seen: dict[tuple[str, int], list[int]] = {}  # rows, first and last offset
    for batch in raw:
        table = pa.Table.from_batches([batch]).rename_columns(
            {"key": "raw_key", "value": "raw_value", "timestamp": "kafka_timestamp"}
        )
        table = table.select([*RAW_COLUMNS, "topic", "partition", "offset", "kafka_timestamp"])
        yield routed_batch(
            table.num_rows,
            kind=pa.array(["undecided"] * table.num_rows),
            **{name: table.column(name) for name in table.column_names},
        )
        for topic, partition, rows in partitions_of(table, "topic", "partition"):
            offsets = rows.column("offset")
            low, high = pc.min(offsets).as_py(), pc.max(offsets).as_py()
            entry = seen.setdefault((topic, partition), [0, low, high])
            entry[0] += rows.num_rows
            entry[1], entry[2] = min(entry[1], low), max(entry[2], high)
    for (topic, partition), (count, low, high) in seen.items():
        yield routed_batch(
            1,
            kind=pa.array(["stats"]),
            topic=pa.array([topic]),
            partition=pa.array([partition]),
            undecided=pa.array([count]),
            first_offset=pa.array([low]),
            last_offset=pa.array([high]),
            **{k: pa.array([0]) for k in ("rows_in", "written", "duplicates", "dead")},
        )
