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

from clickstream_pipeline.core.config import INGEST_DEFAULTS, CopyFormat
from clickstream_pipeline.core.errors import DatabaseError
from clickstream_pipeline.core.model import INTEGER_TYPES, LAB, PROPERTIES, EventModel
from clickstream_pipeline.core.schema import EVENT_COLUMNS
from clickstream_pipeline.ingest import ledger
from clickstream_pipeline.ingest.arrow_validation import check_batch
from clickstream_pipeline.ingest.routed import (
    NOTHING_WRITTEN,
    Received,
    partitions_of,
    route_outputs,
    undecided_batches,
    valid_rows_of,
)
from clickstream_pipeline.ingest.spill import SpilledBatches, release_freed_memory
from clickstream_pipeline.ingest.transforms import Rules
from clickstream_pipeline.warehouse.connection_string import libpq_conninfo
from clickstream_pipeline.warehouse.database import kept_connection, open_connection, retrying

log = logging.getLogger(__name__)


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
    # INGEST_DEFAULTS.*: the [ingest] settings' defaults (meaning in core.config.IngestConfig)
    copy_format: CopyFormat = INGEST_DEFAULTS.sink_copy_format
    max_attempts: int = INGEST_DEFAULTS.sink_max_attempts
    backoff_s: float = INGEST_DEFAULTS.sink_backoff_s
    max_backoff_s: float = 10.0  # not a setting: the cap of the doubling backoff
    # rows per customer (kind "tenant") for freshness per tenant
    tenant_rows: bool = INGEST_DEFAULTS.tenant_freshness_top > 0
    buffer_bytes: int = INGEST_DEFAULTS.task_buffer_bytes
    # each topic's identity in the ledger (`ingest.topics`); topics not listed take the default
    topic_ids: dict[str, str] = field(default_factory=dict)
    default_topic_id: str = ""
    model: EventModel = LAB  # the event model: the columns written, in COPY's order

    @property
    def columns(self) -> tuple[str, ...]:
        return self.model.event_columns

    @property
    def jsonb_columns(self) -> tuple[str, ...]:
        return jsonb_columns(self.model)

    @property
    def integer_tenant(self) -> bool:
        """Freshness per tenant keeps tenant ids as bigint: text tenants have none."""
        return self.model.fields[self.model.tenant].type in INTEGER_TYPES

    def topic_id(self, topic: str) -> str:
        return self.topic_ids.get(topic, self.default_topic_id)

    @property
    def table(self) -> str:
        return f"{quote_ident(self.schema_name)}.{quote_ident(self.table_name)}"


def check_target_columns(settings: SinkSettings) -> None:
    """Refuse to start when the table lacks a column of the event model (every batch's COPY
    would fail): names the columns to add."""

    def columns() -> set[str] | None:
        conn = open_connection(settings.connect_kwargs)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT to_regclass(%s) IS NOT NULL", (settings.table,))
                if not cur.fetchone()[0]:
                    return None
                cur.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                    "AND attnum > 0 AND NOT attisdropped",
                    (settings.table,),
                )
                return {name for (name,) in cur.fetchall()}
        finally:
            conn.close()

    found = retrying(columns, settings.max_attempts, settings.backoff_s)
    if found is None:
        raise DatabaseError(f"{settings.table} does not exist: run the bootstrap first")
    if missing := [c for c in settings.columns if c not in found]:
        raise DatabaseError(
            f"{settings.table} has no column {', '.join(missing)} of the event model: add "
            "them (ALTER TABLE ... ADD COLUMN, nullable for optional fields) before the job starts"
        )


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copy_sql(table: str, columns: tuple[str, ...] = EVENT_COLUMNS) -> str:
    names = ", ".join(quote_ident(c) for c in columns)
    return f"COPY {table} ({names}) FROM STDIN WITH (FORMAT csv)"


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
        conn = open_connection(settings.connect_kwargs)
        try:
            with conn.cursor() as cur:
                offsets = rows.column("kafka_offset")
                low, high = pc.min(offsets).as_py(), pc.max(offsets).as_py()
                done = ledger.in_ranges(
                    offsets,
                    ledger.committed_ranges(
                        cur, settings.sink, topic, settings.topic_id(topic), partition, low, high
                    ),
                )
                todo = rows.filter(pc.invert(done))
                rejected: list[tuple[int, str]] = []
                if todo.num_rows:
                    rejected = copy_isolating_rejects(
                        cur, copy_sql(settings.table, settings.columns), todo
                    )
                    # a concurrent attempt that committed this range first makes this insert
                    # fail on the primary key (a 23505, retried below): nothing is written twice
                    cur.executemany(
                        ledger.insert_sql(lambda _: "%s"),
                        [
                            (
                                settings.sink,
                                topic,
                                settings.topic_id(topic),
                                partition,
                                start,
                                end,
                                settings.batch_id,
                                count,
                            )
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
    return libpq_conninfo(connect_kwargs)


_ADBC_ROOTS: dict[str, adbc.Connection] = {}
_ADBC_ROOTS_LOCK = threading.Lock()


def adbc_connection(connect_kwargs: dict[str, Any]) -> adbc.Connection:
    """A new ADBC connection (not autocommit), which a Python worker keeps for its tasks.

    Opening ADBC's database object loads the server's type catalog (about 0.2 s here, where
    every partition adds types); a Python worker opens it once, with one idle autocommit
    connection, and clones new connections from it (about 10 ms with TLS).
    """
    info = conninfo(connect_kwargs)
    with _ADBC_ROOTS_LOCK:
        root = _ADBC_ROOTS.get(info)
        if root is None:
            root = _ADBC_ROOTS[info] = adbc.connect(info, autocommit=True)
    return root.adbc_clone()


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


JSONB_VERSION = b"\x01"  # what jsonb's binary form starts with, before the JSON text


def jsonb_columns(model: EventModel) -> tuple[str, ...]:
    """The model's jsonb columns: `properties` and its jsonb fields."""
    jsonb = {n for n, spec in model.fields.items() if spec.type == "jsonb"} | {PROPERTIES}
    return tuple(c for c in model.event_columns if c in jsonb)


def binary_jsonb(rows: pa.Table, columns: tuple[str, ...] = (PROPERTIES,)) -> pa.Table:
    """The jsonb `columns` (JSON text) as binary COPY sends jsonb: a version byte, then the
    text. ADBC sends Arrow binary as is, and the server's jsonb reader takes it from there."""
    for name in columns:
        if name not in rows.column_names:
            continue
        index = rows.column_names.index(name)
        text = rows.column(index).cast(pa.binary())
        framed = pc.binary_join_element_wise(pa.scalar(JSONB_VERSION), text, b"")
        rows = rows.set_column(index, pa.field(name, pa.binary()), framed)
    return rows


def stream_copy(
    settings: SinkSettings, first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]
) -> tuple[Received, Streamed | None]:
    """The fast path: each batch's new valid rows into one binary COPY as they arrive.

    Returns the rows received (`Received`) and what was written, or None when the fast path
    failed and nothing of it committed (the caller then writes the task the careful way). An
    error of the input itself (Spark's side) is raised, never taken for a database failure.
    """
    received = Received(settings.buffer_bytes)
    streamed = Streamed()
    input_error: list[BaseException] = []
    started = time.monotonic()
    batches = itertools.chain([first], rest)

    def new_rows(lookup: ledger.LedgerLookup) -> Iterator[pa.RecordBatch]:
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
                    rows = todo.select(list(settings.columns))
                    yield from binary_jsonb(rows, settings.jsonb_columns).to_batches()

    empty = pa.Table.from_batches([first.slice(0, 0)]).select(list(settings.columns))
    schema = binary_jsonb(empty, settings.jsonb_columns).schema
    kwargs = settings.connect_kwargs
    try:
        with (
            kept_connection(
                "ledger lookups", kwargs, lambda: open_connection(kwargs, True)
            ) as looks,
            kept_connection("binary COPY", kwargs, lambda: adbc_connection(kwargs)) as conn,
            conn.cursor() as cur,
        ):
            cur.adbc_ingest(
                settings.table_name,
                pa.RecordBatchReader.from_batches(
                    schema, new_rows(ledger.LedgerLookup(looks, settings.sink, settings.topic_id))
                ),
                mode="append",
                db_schema_name=settings.schema_name,
            )
            entries = [
                (
                    settings.sink,
                    topic,
                    settings.topic_id(topic),
                    partition,
                    low,
                    high,
                    settings.batch_id,
                    count,
                )
                for (topic, partition), (count, low, high) in streamed.written.items()
            ]
            if entries:
                cur.executemany(ledger.insert_sql(lambda i: f"${i}"), entries)
            conn.commit()
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
    streamed.seconds = time.monotonic() - started
    return received, streamed


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
            received = Received(settings.buffer_bytes)
            received.extend(itertools.chain([first], source))
        yield from received.dead.drain()
        table = received.table()
        if table.num_rows == 0:
            return
        for topic, partition, rows in partitions_of(table):
            valid = valid_rows_of(rows)
            valid_rows = valid.select(list(settings.columns))
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
            yield from route_outputs(
                topic,
                partition,
                rows,
                written,
                valid if settings.tenant_rows and settings.integer_tenant else None,
                invalid_sent=True,
                tenant=settings.model.tenant,
            )

    return run


def check_and_route(
    settings: SinkSettings, rules: Rules, now_us: int
) -> Callable[[Iterable[pa.RecordBatch]], Iterable[pa.RecordBatch]]:
    """The `mapInArrow` function over raw Kafka rows: validated in the worker, then routed.

    Records the worker's rules leave to Spark come back as kind "undecided" rows.
    """
    route_validated = write_and_route(settings)

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        left = SpilledBatches(settings.buffer_bytes)

        def validated() -> Iterator[pa.RecordBatch]:
            for raw in batches:
                checked = check_batch(raw, rules, now_us)
                if checked.undecided.num_rows:
                    left.append(checked.undecided)
                yield checked.validated
                release_freed_memory(raw)

        yield from route_validated(validated())
        if left.num_rows:
            yield from undecided_batches(left.drain())

    return run
