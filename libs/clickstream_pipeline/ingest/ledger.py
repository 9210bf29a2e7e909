"""The sinks' bookkeeping in the database: the offset ledger and the batch records.

`clickstream_ingest_ledger` holds, per sink and Kafka partition, the offset ranges whose rows
are in `events`; a range's entry commits in the same transaction as its rows, which is what
makes a replayed batch write nothing twice. A partition is named by its topic's identity too
(`topics`: Kafka's topic id, or a configured generation), so a topic recreated under the
same name is never taken for the old one. `clickstream_ingest_batches` holds one row per
micro-batch: counts that balance (read = written + duplicates + dead-lettered), offsets,
timings and delays, read by the dashboard and the benchmarks, and
`clickstream_ingest_tenant_freshness` the batch's delays per tenant (`tenants`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from psycopg2.extras import execute_values

from clickstream_pipeline.ingest.tenants import TenantFreshness
from clickstream_pipeline.warehouse.database import (
    ConnectionParams,
    fetch,
    kept_connection,
    open_connection,
)


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


LOOKUP = """SELECT start_offset, end_offset FROM clickstream_ingest_ledger
    WHERE sink = %s AND kafka_topic = %s AND topic_id = %s AND kafka_partition = %s
      AND start_offset <= %s AND end_offset >= %s"""
INSERT = """INSERT INTO clickstream_ingest_ledger (sink, kafka_topic, topic_id, kafka_partition,
    start_offset, end_offset, batch_id, row_count) VALUES ({})"""


def insert_sql(placeholder: Callable[[int], str]) -> str:
    """The ledger's INSERT with the driver's placeholders (`%s` for psycopg2, `$n` for ADBC)."""
    return INSERT.format(", ".join(placeholder(i) for i in range(1, 9)))


NO_OFFSET_ABOVE = 2**63 - 1


def committed_ranges(
    cur: Any, sink: str, topic: str, topic_id: str, partition: int, low: int, high: int
) -> list[tuple[int, int]]:
    """The ranges `sink` committed of this topic's incarnation that overlap [low, high]."""
    cur.execute(LOOKUP, (sink, topic, topic_id, partition, high, low))
    return [(int(start), int(end)) for start, end in cur.fetchall()]


def in_ranges(offsets: pa.Array | pa.ChunkedArray, ranges: list[tuple[int, int]]) -> pa.Array:
    """True for offsets inside any of `ranges`."""
    mask = pc.is_null(offsets)  # all false: offsets are never null
    for start, end in ranges:
        inside = pc.and_(pc.greater_equal(offsets, start), pc.less_equal(offsets, end))
        mask = pc.or_(mask, inside)
    return mask


class LedgerLookup:
    """Committed ranges per Kafka partition, read once per task on an autocommit connection
    other than the COPY's.

    The fast path cannot query while its COPY streams; reading committed ranges elsewhere is
    as safe as in the transaction (each statement sees what was committed when it started), and
    an attempt that commits the same range meanwhile still collides on the ledger's key.
    """

    def __init__(self, conn: Any, sink: str, topic_id: Callable[[str], str]) -> None:
        self.conn = conn
        self.sink = sink
        self.topic_id = topic_id
        self.known: dict[tuple[str, int], tuple[int, list[tuple[int, int]]]] = {}

    def ranges(self, topic: str, partition: int, low: int) -> list[tuple[int, int]]:
        """Committed ranges ending at or after `low` (offsets above it, in a task, ascend)."""
        cached = self.known.get((topic, partition))
        if cached is None or low < cached[0]:
            with self.conn.cursor() as cur:
                found = committed_ranges(
                    cur, self.sink, topic, self.topic_id(topic), partition, low, NO_OFFSET_ABOVE
                )
            cached = self.known[(topic, partition)] = (low, found)
        return cached[1]


@dataclass(frozen=True)
class BatchReport:
    batch_id: int
    rows_read: int
    rows_written: int
    rows_duplicate: int
    rows_dead: int
    offsets: dict[str, list[int]]
    seconds: float
    max_delay_s: float | None
    min_delay_s: float | None

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_written + self.rows_duplicate + self.rows_dead


def offset_spans(stats: list[Any]) -> dict[str, list[int]]:
    """First and last offset read per `topic/partition` over a batch's statistics rows."""
    spans: dict[str, list[int]] = {}
    for r in stats:
        key = f"{r['topic']}/{r['partition']}"
        low, high = spans.get(key, (r["first_offset"], r["last_offset"]))
        spans[key] = [min(low, r["first_offset"]), max(high, r["last_offset"])]
    return dict(sorted(spans.items()))


def record_batch(
    connect_kwargs: dict[str, Any],
    query_name: str,
    report: BatchReport,
    started_at: datetime,
    committed_at: datetime,
    tenants: Sequence[TenantFreshness] = (),
    read_rollup_lag: bool = False,
) -> dict[str, int]:
    """The batch's row in `clickstream_ingest_batches` and its freshness per tenant, in one
    transaction (a replayed batch's rows replace it); with `read_rollup_lag`, the events each
    rollup has yet to aggregate (`clickstream_rollup_lag`), on the same connection (the
    driver keeps it between batches)."""
    with (
        kept_connection(
            "batch records", connect_kwargs, lambda: open_connection(connect_kwargs)
        ) as conn,
        conn,
        conn.cursor() as cur,
    ):
        cur.execute(
            """DELETE FROM clickstream_ingest_tenant_freshness
               WHERE query_name = %s AND batch_id = %s""",
            (query_name, report.batch_id),
        )
        execute_values(
            cur,
            """INSERT INTO clickstream_ingest_tenant_freshness (query_name, batch_id,
                   customer_id, customers, rows_written, max_delay_seconds,
                   min_delay_seconds, committed_at) VALUES %s""",
            [
                (
                    query_name,
                    report.batch_id,
                    t.customer_id,
                    t.customers,
                    t.rows,
                    t.max_delay_s,
                    t.min_delay_s,
                    committed_at,
                )
                for t in tenants
            ],
        )
        cur.execute(
            """INSERT INTO clickstream_ingest_batches (query_name, batch_id, rows_read,
                   rows_written, rows_duplicate, rows_dead_lettered, offsets, started_at,
                   committed_at, seconds, rows_per_second, max_delay_seconds,
                   min_delay_seconds, events_through_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                       CASE WHEN %s > 0 THEN (SELECT max(pg_sequence_last_value(
                           event_id_sequence_name::regclass)) FROM rollups) END)
               ON CONFLICT (query_name, batch_id) DO UPDATE SET
                   rows_read = excluded.rows_read, rows_written = excluded.rows_written,
                   rows_duplicate = excluded.rows_duplicate,
                   rows_dead_lettered = excluded.rows_dead_lettered,
                   offsets = excluded.offsets, started_at = excluded.started_at,
                   committed_at = excluded.committed_at, seconds = excluded.seconds,
                   rows_per_second = excluded.rows_per_second,
                   max_delay_seconds = excluded.max_delay_seconds,
                   min_delay_seconds = excluded.min_delay_seconds,
                   events_through_id = excluded.events_through_id, rolled_up_at = NULL""",
            (
                query_name,
                report.batch_id,
                report.rows_read,
                report.rows_written,
                report.rows_duplicate,
                report.rows_dead,
                json.dumps(report.offsets),
                started_at,
                committed_at,
                report.seconds,
                report.rows_read / report.seconds if report.seconds else 0.0,
                report.max_delay_s,
                report.min_delay_s,
                report.rows_written,
            ),
        )
        if not read_rollup_lag:
            return {}
        cur.execute("SELECT rollup, events_behind FROM clickstream_rollup_lag")
        return {name: int(behind) for name, behind in cur.fetchall()}


def tenant_rollup_delays(
    connect_kwargs: dict[str, Any], query_name: str, batch_id: int
) -> dict[str, float]:
    """A stamped batch's tenants (labelled as in `TenantFreshness.label`): Kafka timestamp of
    each one's slowest record to the moment every rollup held the batch."""
    conn = open_connection(connect_kwargs)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                """SELECT coalesce(customer_id::text, 'other'), max_rollup_delay_seconds
                   FROM clickstream_tenant_freshness
                   WHERE query_name = %s AND batch_id = %s AND rolled_up_at IS NOT NULL""",
                (query_name, batch_id),
            )
            return {label: float(seconds) for label, seconds in cur.fetchall()}
    finally:
        conn.close()


@dataclass(frozen=True)
class QueryTotals:
    """A query's batch records summed: they balance when nothing was lost."""

    batches: int
    read: int
    written: int
    duplicates: int
    dead: int

    def summary(self, query_name: str) -> str:
        return (
            f"query {query_name}: {self.batches} batches, read {self.read}, written "
            f"{self.written}, duplicates skipped {self.duplicates}, dead-lettered {self.dead}"
        )


def query_totals(params: ConnectionParams, query_name: str) -> QueryTotals:
    """The sums of `clickstream_ingest_batches` for one query."""
    (row,) = fetch(
        params,
        """SELECT count(*), sum(rows_read), sum(rows_written), sum(rows_duplicate),
                  sum(rows_dead_lettered) FROM clickstream_ingest_batches WHERE query_name = %s""",
        (query_name,),
    )
    return QueryTotals(*(int(v or 0) for v in row))
