"""The events sink: Arrow batches from each Spark task into one PostgreSQL COPY, exactly once.

Each task (one Kafka offset range: narrow transforms keep Spark's Kafka partitioning) receives
its rows as Arrow record batches (`mapInArrow`), writes them as CSV with pyarrow's C++ writer
into `COPY events (...) FROM STDIN`, and records the offset range it wrote in
`clickstream_ingest_ledger` in the same transaction. A replayed batch (Spark re-runs the last
uncommitted one after a crash) finds the ranges already committed and skips those rows, so no
row is written twice; a concurrent duplicate attempt fails on the ledger's primary key and
rolls back. Transient errors are retried with jittered backoff; rows the database rejects are
isolated by bisection (savepoints) and returned for the dead-letter store, the rest commit.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.errors
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from clickstream_pipeline.schema import EVENT_COLUMNS

log = logging.getLogger(__name__)

RESULT_SCHEMA = (
    "kafka_topic string, kafka_partition int, rows_in long, written long, duplicates long, "
    "rejected_offsets array<long>, rejected_errors array<string>, attempts int, seconds double"
)

# SQLSTATEs worth retrying: connection trouble, server shutting down or starting, serialization
# failure, deadlock, too many connections.
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
}


@dataclass(frozen=True)
class SinkSettings:
    """Everything a task needs; plain values only, so it pickles to the executors."""

    connect_kwargs: dict[str, Any] = field(repr=False)  # psycopg2 arguments, password included
    table: str  # already quoted, e.g. "public"."events"
    sink: str
    batch_id: int
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


def copy_sql(table: str) -> str:
    columns = ", ".join(quote_ident(c) for c in EVENT_COLUMNS)
    return f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)"


def to_csv(table: pa.Table) -> io.BytesIO:
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, batch_size=65536))
    buffer.seek(0)
    return buffer


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
    mask = pa.array([False] * len(offsets))
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
    settings: SinkSettings,
    topic: str,
    partition: int,
    rows: pa.Table,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """One Kafka partition's rows of a task in one transaction; transient errors retried."""
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        conn = None
        try:
            conn = psycopg2.connect(**settings.connect_kwargs)
            with conn.cursor() as cur:
                done = committed_mask(cur, settings, topic, partition, rows.column("kafka_offset"))
                todo = rows.filter(pc.invert(done))
                rejected: list[tuple[int, str]] = []
                if todo.num_rows:
                    rejected = copy_isolating_rejects(cur, copy_sql(settings.table), todo)
                    offsets = todo.column("kafka_offset")
                    cur.execute(
                        """INSERT INTO clickstream_ingest_ledger (sink, kafka_topic,
                               kafka_partition, start_offset, end_offset, batch_id, row_count)
                           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                        (
                            settings.sink,
                            topic,
                            partition,
                            pc.min(offsets).as_py(),
                            pc.max(offsets).as_py(),
                            settings.batch_id,
                            todo.num_rows - len(rejected),
                        ),
                    )
            conn.commit()
            return {
                "kafka_topic": topic,
                "kafka_partition": partition,
                "rows_in": rows.num_rows,
                "written": todo.num_rows - len(rejected),
                "duplicates": rows.num_rows - todo.num_rows,
                "rejected_offsets": [o for o, _ in rejected],
                "rejected_errors": [e for _, e in rejected],
                "attempts": attempt,
                "seconds": time.monotonic() - started,
            }
        except psycopg2.errors.UniqueViolation:
            # another attempt of this task committed the same range first: look again
            if attempt >= settings.max_attempts:
                raise
        except psycopg2.Error as exc:
            if not is_transient(exc) or attempt >= settings.max_attempts:
                raise
            delay = min(settings.max_backoff_s, settings.backoff_s * 2 ** (attempt - 1))
            log.warning(
                "transient database error (attempt %d): %s; retrying in %.1fs",
                attempt,
                type(exc).__name__,
                delay,
            )
            sleep(delay * random.uniform(0.5, 1.5))
        finally:
            if conn is not None:
                conn.close()


def copy_partition(
    settings: SinkSettings,
) -> Callable[[Iterable[pa.RecordBatch]], Iterable[pa.RecordBatch]]:
    """The `mapInArrow` function for one micro-batch: one transaction per Kafka partition."""

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = pa.Table.from_batches(list(batches))
        if table.num_rows == 0:
            return
        keys = (
            table.select(["kafka_topic", "kafka_partition"])
            .group_by(["kafka_topic", "kafka_partition"])
            .aggregate([])
        )
        results = []
        for topic, partition in zip(
            keys.column(0).to_pylist(), keys.column(1).to_pylist(), strict=True
        ):
            mask = pc.and_(
                pc.equal(table.column("kafka_topic"), topic),
                pc.equal(table.column("kafka_partition"), partition),
            )
            results.append(write_range(settings, topic, partition, table.filter(mask)))
        yield pa.RecordBatch.from_pylist(results, schema=result_arrow_schema())

    return run


def result_arrow_schema() -> pa.Schema:
    return pa.schema(
        [
            ("kafka_topic", pa.string()),
            ("kafka_partition", pa.int32()),
            ("rows_in", pa.int64()),
            ("written", pa.int64()),
            ("duplicates", pa.int64()),
            ("rejected_offsets", pa.list_(pa.int64())),
            ("rejected_errors", pa.list_(pa.string())),
            ("attempts", pa.int32()),
            ("seconds", pa.float64()),
        ]
    )
