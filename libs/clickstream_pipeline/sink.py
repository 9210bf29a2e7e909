"""The events sink: Arrow batches from each Spark task into PostgreSQL COPY, exactly once.

Each task (whole Kafka offset ranges: narrow transforms and coalesce never split them) receives
its validated rows as Arrow record batches (`mapInArrow`). On the fast path every batch goes
into ONE binary COPY (ADBC's PostgreSQL driver) as soon as it arrives, so Spark, Python and the
database work at the same time, and the server decodes binary values instead of parsing text.
The offset ranges written are recorded in `clickstream_ingest_ledger` in the same transaction.
The task returns the invalid rows (dead letters) and one statistics row per Kafka partition,
so the batch is read and parsed once. `check_and_route` is the same function over raw Kafka
rows, validated in the worker first (`arrow_validation`); the records it leaves to Spark's
rules come back raw, as kind "undecided".

A replayed batch (Spark re-runs the last uncommitted one after a crash) finds its ranges
already committed and skips those rows, so no row is written twice; a concurrent duplicate
attempt fails on the ledger's primary key and rolls back. When the fast path fails (a row the
database rejects, a lost connection) the task's rows go through the careful path: CSV COPY per
Kafka partition, transient errors retried with jittered backoff, rows the database rejects
isolated by bisection (savepoints) and returned for the dead-letter store, the rest committed.
"""

from __future__ import annotations

import io
import itertools
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import adbc_driver_postgresql.dbapi as adbc
import psycopg2
import psycopg2.errors
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg2.extensions import make_dsn
from pyspark.sql.pandas.types import to_arrow_schema

from clickstream_pipeline import ledger
from clickstream_pipeline.arrow_validation import check_batch
from clickstream_pipeline.schema import EVENT_COLUMNS, ROUTED_SCHEMA
from clickstream_pipeline.transforms import Rules

log = logging.getLogger(__name__)

ROUTED_ARROW_SCHEMA = to_arrow_schema(ROUTED_SCHEMA)

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
    schema_name: str
    table_name: str
    sink: str
    batch_id: int
    # "span": a task's rows are one contiguous Kafka offset range (the streaming case), so its
    # ledger entry is [first, last]; "runs": rows may interleave with other tasks' (replays of
    # dead letters), so each run of consecutive offsets gets its own entry.
    ledger: Literal["span", "runs"] = "span"
    # "binary": the fast path (streamed binary COPY, CSV only when it fails); "csv": always CSV
    copy_format: Literal["binary", "csv"] = "binary"
    max_attempts: int = 8
    backoff_s: float = 0.25
    max_backoff_s: float = 10.0

    @property
    def table(self) -> str:
        return f"{quote_ident(self.schema_name)}.{quote_ident(self.table_name)}"


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


# Citus relays a worker's error during COPY with its message but SQLSTATE XX000 (internal
# error); these are PostgreSQL's messages for the errors one row causes.
_CITUS_RELAYED_ROW_ERROR = re.compile(
    r"violates (check|not-null|foreign key|exclusion) constraint|no partition of relation"
    r"|value too long|out of range|invalid input (syntax|value)|invalid byte sequence"
)


def row_specific(exc: psycopg2.Error) -> bool:
    """Errors one bad row causes (data exceptions, constraint or partition violations)."""
    code = getattr(exc, "pgcode", None) or ""
    if code == "XX000":
        return bool(_CITUS_RELAYED_ROW_ERROR.search(exc.pgerror or ""))
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
                offsets = rows.column("kafka_offset")
                low, high = pc.min(offsets).as_py(), pc.max(offsets).as_py()
                done = ledger.in_ranges(
                    offsets,
                    ledger.committed_ranges(cur, settings.sink, topic, partition, low, high),
                )
                todo = rows.filter(pc.invert(done))
                rejected: list[tuple[int, str]] = []
                if todo.num_rows:
                    rejected = copy_isolating_rejects(cur, copy_sql(settings.table), todo)
                    # a concurrent attempt that committed this range first makes this insert
                    # fail on the primary key (a 23505, retried below): nothing is written twice
                    cur.executemany(
                        ledger.insert_sql(lambda _: "%s"),
                        [
                            (settings.sink, topic, partition, start, end, settings.batch_id, count)
                            for start, end, count in ledger.ledger_ranges(
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


def conninfo(connect_kwargs: dict[str, Any]) -> str:
    """libpq's `key='value'` form of psycopg2's connect arguments (ADBC takes this form)."""
    return make_dsn(**{k: v for k, v in connect_kwargs.items() if v is not None})


_ADBC_ROOTS: dict[str, adbc.Connection] = {}
_ADBC_ROOTS_LOCK = threading.Lock()


def adbc_connection(connect_kwargs: dict[str, Any]) -> adbc.Connection:
    """A new ADBC connection (not autocommit) for one task.

    Opening ADBC's database object loads the server's type catalog (about 0.2 s here, where
    every partition adds types); a Python worker opens it once, with one idle autocommit
    connection, and each task clones a connection from it in about 5 ms.
    """
    info = conninfo(connect_kwargs)
    with _ADBC_ROOTS_LOCK:
        root = _ADBC_ROOTS.get(info)
        if root is None:
            root = _ADBC_ROOTS[info] = adbc.connect(info, autocommit=True)
    return root.adbc_clone()


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


@dataclass
class Streamed:
    """What the fast path wrote of a task: rows per Kafka partition, first and last offset."""

    written: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    seconds: float = 0.0

    def note(self, topic: str, partition: int, offsets: pa.Array | pa.ChunkedArray) -> None:
        low, high = pc.min(offsets).as_py(), pc.max(offsets).as_py()
        entry = self.written.setdefault((topic, partition), [0, low, high])
        entry[0] += len(offsets)
        entry[1], entry[2] = min(entry[1], low), max(entry[2], high)


def stream_copy(
    settings: SinkSettings, first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]
) -> tuple[list[pa.RecordBatch], Streamed | None]:
    """The fast path: each batch's new valid rows into one binary COPY as they arrive.

    Returns every batch received and what was written, or None when the fast path failed and
    nothing of it committed (the caller then writes the task the careful way). An error of the
    input itself (Spark's side) is raised, never taken for a database failure.
    """
    received: list[pa.RecordBatch] = []
    streamed = Streamed()
    input_error: list[BaseException] = []
    lookup = ledger.LedgerLookup(settings.connect_kwargs, settings.sink)
    started = time.monotonic()
    batches = itertools.chain([first], rest)

    def new_rows() -> Iterator[pa.RecordBatch]:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except BaseException as exc:
                input_error.append(exc)
                raise
            received.append(batch)
            for topic, partition, rows in partitions_of(pa.Table.from_batches([batch])):
                valid = valid_rows_of(rows)
                if not valid.num_rows:
                    continue
                offsets = valid.column("kafka_offset")
                done = lookup.ranges(topic, partition, pc.min(offsets).as_py())
                todo = valid.filter(pc.invert(ledger.in_ranges(offsets, done))) if done else valid
                if todo.num_rows:
                    streamed.note(topic, partition, todo.column("kafka_offset"))
                    yield from todo.select(list(EVENT_COLUMNS)).to_batches()

    schema = pa.schema([first.schema.field(name) for name in EVENT_COLUMNS])
    try:
        conn = adbc_connection(settings.connect_kwargs)
        try:
            with conn.cursor() as cur:
                cur.adbc_ingest(
                    settings.table_name,
                    pa.RecordBatchReader.from_batches(schema, new_rows()),
                    mode="append",
                    db_schema_name=settings.schema_name,
                )
                entries = [
                    (settings.sink, topic, partition, low, high, settings.batch_id, count)
                    for (topic, partition), (count, low, high) in streamed.written.items()
                ]
                if entries:
                    cur.executemany(ledger.insert_sql(lambda i: f"${i}"), entries)
            conn.commit()
        finally:
            conn.close()
    except Exception as exc:
        if input_error:
            raise input_error[0] from None
        log.warning(
            "binary COPY of batch %d failed (%s, SQLSTATE %s): writing the task's rows as CSV",
            settings.batch_id,
            type(exc).__name__,
            getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None) or "-",
        )
        received.extend(batches)
        return received, None
    finally:
        lookup.close()
    streamed.seconds = time.monotonic() - started
    return received, streamed


NOTHING_WRITTEN: dict[str, Any] = {
    "written": 0,
    "duplicates": 0,
    "rejected_offsets": [],
    "rejected_errors": [],
    "attempts": 0,
    "seconds": 0.0,
}


def write_and_route(
    settings: SinkSettings,
) -> Callable[[Iterable[pa.RecordBatch]], Iterable[pa.RecordBatch]]:
    """The `mapInArrow` function of one micro-batch over its validated rows."""

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        source = iter(batches)
        first = next(source, None)
        if first is None:
            return
        streamed: Streamed | None = None
        if settings.copy_format == "binary" and settings.ledger == "span":
            received, streamed = stream_copy(settings, first, source)
        else:
            received = [first, *source]
        table = pa.Table.from_batches(received)
        if table.num_rows == 0:
            return
        for topic, partition, rows in partitions_of(table):
            valid_rows = valid_rows_of(rows).select(list(EVENT_COLUMNS))
            if streamed is not None:
                count = streamed.written.get((topic, partition), [0])[0]
                written = {
                    **NOTHING_WRITTEN,
                    "written": count,
                    "duplicates": valid_rows.num_rows - count,
                    "attempts": 1,
                    "seconds": streamed.seconds,
                }
            elif valid_rows.num_rows:
                written = write_range(settings, topic, partition, valid_rows)
            else:
                written = NOTHING_WRITTEN
            yield from route_outputs(topic, partition, rows, written)

    return run


def route_outputs(
    topic: str, partition: int, rows: pa.Table, written: dict[str, Any]
) -> Iterator[pa.RecordBatch]:
    """One Kafka partition's dead letters (invalid or refused rows) and its statistics row."""
    invalid = pc.is_valid(rows.column("reject_reason"))
    dead = rows.filter(invalid)
    rejected = dict(zip(written["rejected_offsets"], written["rejected_errors"], strict=True))
    if dead.num_rows:
        yield _dead_batch(dead, dead.column("reject_reason"), with_raw=True)
    if rejected:
        # raw key and value are filled in by the driver from the micro-batch
        refused = rows.filter(
            pc.is_in(rows.column("kafka_offset"), pa.array(list(rejected), pa.int64()))
        )
        reasons = [rejected[o] for o in refused.column("kafka_offset").to_pylist()]
        yield _dead_batch(refused, pa.array(reasons, pa.string()), with_raw=False)
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


def _dead_batch(rows: pa.Table, reasons: pa.Array, with_raw: bool) -> pa.RecordBatch:
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


def _undecided_batches(raw: pa.Table) -> Iterator[pa.RecordBatch]:
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


def check_and_route(
    settings: SinkSettings, rules: Rules, now_us: int
) -> Callable[[Iterable[pa.RecordBatch]], Iterable[pa.RecordBatch]]:
    """The `mapInArrow` function over raw Kafka rows: validated in the worker, then routed.

    Records the worker's rules leave to Spark come back as kind "undecided" rows.
    """
    route_validated = write_and_route(settings)

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        left: list[pa.RecordBatch] = []

        def validated() -> Iterator[pa.RecordBatch]:
            for raw in batches:
                checked = check_batch(raw, rules, now_us)
                if checked.undecided.num_rows:
                    left.append(checked.undecided)
                yield checked.validated

        yield from route_validated(validated())
        if left:
            yield from _undecided_batches(pa.Table.from_batches(left))

    return run
