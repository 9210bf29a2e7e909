"""The events sink: Arrow batches from each Spark task into one PostgreSQL COPY, exactly once.

Each task (one Kafka offset range: narrow transforms keep Spark's Kafka partitioning) receives
its validated rows as Arrow record batches (`mapInArrow`), writes the valid ones as CSV with
pyarrow's C++ writer into `COPY events (...) FROM STDIN`, and records the offset range it wrote
in `clickstream_ingest_ledger` in the same transaction. It returns the invalid rows (dead
letters) and one statistics row per Kafka partition, so the batch is read and parsed once.
A replayed batch (Spark re-runs the last uncommitted one after a crash) finds its ranges
already committed and skips those rows, so no row is written twice; a concurrent duplicate
attempt fails on the ledger's primary key and rolls back. Transient errors are retried with
jittered backoff; rows the database rejects are isolated by bisection (savepoints) and
returned for the dead-letter store, the rest commit.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg2
import psycopg2.errors
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from clickstream_pipeline.schema import EVENT_COLUMNS

log = logging.getLogger(__name__)

# What a task returns: dead letters (kind "dead") and per-Kafka-partition counts (kind "stats").
OUTPUT_SCHEMA = (
    "kind string, topic string, partition int, offset long, kafka_timestamp timestamp, "
    "raw_key binary, raw_value binary, reason string, rows_in long, written long, "
    "duplicates long, dead long, db_rejected long, first_offset long, last_offset long, "
    "oldest timestamp, newest timestamp, attempts int, seconds double"
)

# SQLSTATEs worth retrying: connection trouble, server shutting down or starting, serialization
# failure, deadlock, too many connections, and a unique violation (only the ledger has a unique
# key: another attempt committed the same range, and the retry will find it and skip it).
TRANSIENT_SQLSTATES = {
    "08000",
    "08001",
    "08003",
    "08004",
    "08006",
    "57P01",
    "57P02",
    "57P03",
    "40001",
    "40P01",
    "53300",
    "23505",
}


@dataclass(frozen=True)
class SinkSettings:
    """Everything a task needs; plain values only, so it pickles to the executors."""

    connect_kwargs: dict[str, Any] = field(repr=False)  # psycopg2 arguments, password included
    table: str  # already quoted, e.g. "public"."events"
    sink: str
    batch_id: int
    # "span": a task's rows are one contiguous Kafka offset range (the streaming case), so its
    # ledger entry is [first, last]; "runs": rows may interleave with other tasks' (replays of
    # dead letters), so each run of consecutive offsets gets its own entry.
    ledger: Literal["span", "runs"] = "span"
    max_attempts: int = 8
    backoff_s: float = 0.25
    max_backoff_s: float = 10.0


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, psycopg2.InterfaceError):
        return True
    if isinstance(exc, psycopg2.OperationalError) and getattr(exc, "pgcode", None) is None:
        return True  # connection refused, lost or reset: libpq reports no SQLSTATE
    return getattr(exc, "pgcode", None) in TRANSIENT_SQLSTATES


def retrying(
    action: Callable[[], Any],
    max_attempts: int,
    backoff_s: float,
    max_backoff_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Run `action`, retrying transient database errors with jittered exponential backoff."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except psycopg2.Error as exc:
            if not is_transient(exc) or attempt >= max_attempts:
                raise
            delay = min(max_backoff_s, backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            log.warning(
                "transient database error (attempt %d): %s; retrying in %.1fs",
                attempt,
                type(exc).__name__,
                delay,
            )
            sleep(delay)


def copy_sql(table: str) -> str:
    columns = ", ".join(quote_ident(c) for c in EVENT_COLUMNS)
    return f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)"


def to_csv(table: pa.Table) -> io.BytesIO:
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, batch_size=65536))
    buffer.seek(0)
    return buffer


def ledger_ranges(
    offsets: pa.Array | pa.ChunkedArray, mode: Literal["span", "runs"]
) -> list[tuple[int, int, int]]:
    """(start, end, rows) entries for the ledger: one span, or each run of consecutive offsets."""
    if mode == "span":
        return [(pc.min(offsets).as_py(), pc.max(offsets).as_py(), len(offsets))]
    values = sorted(offsets.to_pylist())
    runs: list[tuple[int, int, int]] = []
    start = previous = values[0]
    for value in values[1:]:
        if value != previous + 1:
            runs.append((start, previous, previous - start + 1))
            start = value
        previous = value
    runs.append((start, previous, previous - start + 1))
    return runs


def committed_mask(
    cur: Any, settings: SinkSettings, topic: str, partition: int, offsets: pa.Array
) -> pa.Array:
    """True for rows whose offset lies in a range this sink already committed."""
    low, high = pc.min(offsets).as_py(), pc.max(offsets).as_py()
    cur.execute(
        """SELECT start_offset, end_offset FROM clickstream_ingest_ledger
           WHERE sink = %s AND kafka_topic = %s AND kafka_partition = %s
             AND start_offset <= %s AND end_offset >= %s""",
        (settings.sink, topic, partition, high, low),
    )
    mask = pc.less(offsets, low)  # all false: no offset is below the minimum
    for start, end in cur.fetchall():
        inside = pc.and_(pc.greater_equal(offsets, start), pc.less_equal(offsets, end))
        mask = pc.or_(mask, inside)
    return mask


def row_specific(exc: psycopg2.Error) -> bool:
    """Errors one bad row causes (data exceptions, constraint or partition violations)."""
    code = getattr(exc, "pgcode", None) or ""
    return code[:2] in ("22", "23") and code != "22P04"  # 22P04: the COPY format itself


def copy_isolating_rejects(cur: Any, statement: str, rows: pa.Table) -> list[tuple[int, str]]:
    """COPY rows; on a row's data error, bisect with savepoints. Returns (offset, error)."""
    cur.execute("SAVEPOINT copy_chunk")
    try:
        cur.copy_expert(statement, to_csv(rows), size=1 << 20)
        cur.execute("RELEASE SAVEPOINT copy_chunk")
        return []
    except psycopg2.Error as exc:
        if not row_specific(exc):
            raise
        cur.execute("ROLLBACK TO SAVEPOINT copy_chunk")
        if rows.num_rows == 1:
            message = (exc.pgerror or str(exc)).strip().splitlines()[0]
            return [(rows.column("kafka_offset")[0].as_py(), f"db_rejected: {message}")]
    half = rows.num_rows // 2
    return copy_isolating_rejects(cur, statement, rows.slice(0, half)) + copy_isolating_rejects(
        cur, statement, rows.slice(half)
    )


def write_range(
    settings: SinkSettings, topic: str, partition: int, rows: pa.Table
) -> dict[str, Any]:
    """One Kafka partition's rows of a task in one transaction; transient errors retried."""
    started = time.monotonic()
    attempts = 0

    def attempt() -> dict[str, Any]:
        nonlocal attempts
        attempts += 1
        conn = psycopg2.connect(**settings.connect_kwargs)
        try:
            with conn.cursor() as cur:
                done = committed_mask(cur, settings, topic, partition, rows.column("kafka_offset"))
                todo = rows.filter(pc.invert(done))
                rejected: list[tuple[int, str]] = []
                if todo.num_rows:
                    rejected = copy_isolating_rejects(cur, copy_sql(settings.table), todo)
                    # a concurrent attempt that committed this range first makes this insert
                    # fail on the primary key (a 23505, retried below): nothing is written twice
                    cur.executemany(
                        """INSERT INTO clickstream_ingest_ledger (sink, kafka_topic,
                               kafka_partition, start_offset, end_offset, batch_id, row_count)
                           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                        [
                            (settings.sink, topic, partition, start, end, settings.batch_id, count)
                            for start, end, count in ledger_ranges(
                                todo.column("kafka_offset"), settings.ledger
                            )
                        ],
                    )
            conn.commit()
        finally:
            conn.close()
        return {
            "kafka_topic": topic,
            "kafka_partition": partition,
            "rows_in": rows.num_rows,
            "written": todo.num_rows - len(rejected),
            "duplicates": rows.num_rows - todo.num_rows,
            "rejected_offsets": [o for o, _ in rejected],
            "rejected_errors": [e for _, e in rejected],
            "attempts": attempts,
            "seconds": time.monotonic() - started,
        }

    result: dict[str, Any] = retrying(
        attempt, settings.max_attempts, settings.backoff_s, settings.max_backoff_s
    )
    return result


def write_and_route(
    settings: SinkSettings,
) -> Callable[[Iterable[pa.RecordBatch]], Iterable[pa.RecordBatch]]:
    """The `mapInArrow` function of one micro-batch over its validated rows."""

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        received = list(batches)
        if not received:
            return
        table = pa.Table.from_batches(received)
        if table.num_rows == 0:
            return
        keys = (
            table.select(["kafka_topic", "kafka_partition"])
            .group_by(["kafka_topic", "kafka_partition"])
            .aggregate([])
        )
        schema = output_arrow_schema()
        for topic, partition in zip(
            keys.column(0).to_pylist(), keys.column(1).to_pylist(), strict=True
        ):
            mask = pc.and_(
                pc.equal(table.column("kafka_topic"), topic),
                pc.equal(table.column("kafka_partition"), partition),
            )
            rows = table.filter(mask)
            invalid = pc.is_valid(rows.column("reject_reason"))
            valid_rows = rows.filter(pc.invert(invalid)).select(list(EVENT_COLUMNS))
            written: dict[str, Any] = (
                write_range(settings, topic, partition, valid_rows)
                if valid_rows.num_rows
                else {
                    "written": 0,
                    "duplicates": 0,
                    "rejected_offsets": [],
                    "rejected_errors": [],
                    "attempts": 0,
                    "seconds": 0.0,
                }
            )
            dead = rows.filter(invalid)
            rejected = dict(
                zip(written["rejected_offsets"], written["rejected_errors"], strict=True)
            )
            if dead.num_rows:
                yield _dead_batch(schema, dead, dead.column("reject_reason"), with_raw=True)
            if rejected:
                # raw key and value are filled in by the driver from the micro-batch
                refused = rows.filter(
                    pc.is_in(rows.column("kafka_offset"), pa.array(list(rejected), pa.int64()))
                )
                reasons = [rejected[o] for o in refused.column("kafka_offset").to_pylist()]
                yield _dead_batch(schema, refused, pa.array(reasons, pa.string()), with_raw=False)
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
                "first_offset": pc.min(offsets).as_py(),
                "last_offset": pc.max(offsets).as_py(),
                "oldest": pc.min(stamps).as_py(),
                "newest": pc.max(stamps).as_py(),
                "attempts": written["attempts"],
                "seconds": written["seconds"],
            }
            yield pa.RecordBatch.from_pylist([stats], schema=schema)

    return run


def _dead_batch(
    schema: pa.Schema, rows: pa.Table, reasons: pa.Array, with_raw: bool
) -> pa.RecordBatch:
    """Dead-letter rows of the output schema from validated rows."""
    n = rows.num_rows
    columns = {
        "kind": pa.array(["dead"] * n),
        "topic": rows.column("kafka_topic"),
        "partition": rows.column("kafka_partition"),
        "offset": rows.column("kafka_offset"),
        "kafka_timestamp": rows.column("kafka_timestamp"),
        "reason": reasons,
    }
    if with_raw:
        columns["raw_key"] = rows.column("raw_key")
        columns["raw_value"] = rows.column("raw_value")
    arrays = []
    for f in schema:
        column = columns.get(f.name)
        if column is None:
            arrays.append(pa.nulls(n, f.type))
        else:
            column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            arrays.append(column.cast(f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def output_arrow_schema() -> pa.Schema:
    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("kind", pa.string()),
            ("topic", pa.string()),
            ("partition", pa.int32()),
            ("offset", pa.int64()),
            ("kafka_timestamp", ts),
            ("raw_key", pa.binary()),
            ("raw_value", pa.binary()),
            ("reason", pa.string()),
            ("rows_in", pa.int64()),
            ("written", pa.int64()),
            ("duplicates", pa.int64()),
            ("dead", pa.int64()),
            ("db_rejected", pa.int64()),
            ("first_offset", pa.int64()),
            ("last_offset", pa.int64()),
            ("oldest", ts),
            ("newest", ts),
            ("attempts", pa.int32()),
            ("seconds", pa.float64()),
        ]
    )
