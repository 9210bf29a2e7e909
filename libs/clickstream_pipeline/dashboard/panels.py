"""The dashboard's panels: one SQL query each, over the rollups or the ingest bookkeeping.

This module is the single source of truth for what a panel reads: the web app renders these
results and the benchmark times these queries. No panel reads raw `events`.

A view is a time range and either all customers or one. Ranges up to 6 hours read the
5-minute rollups, longer ones the hourly rollups; a range covers the buckets that start
within it (`bucket >= now() - range`), as the lab's queries do. All customers read the
all-customer tables (`rollup_totals_*`, `rollup_dimensions_*`), one customer the per-customer
tables (`rollup_customer_totals_*`, and the lab's `rollup_events_*` for its breakdown).

A model whose rollup says `dashboard = true` gets one more panel, the Breakdown card
(`DashboardRollup`): that rollup's top values of one of its dimensions over the view's range,
and the view's customer when the rollup is keyed by the tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from psycopg2 import sql
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ, connection, cursor

from clickstream_pipeline.core.model import EventModel
from clickstream_pipeline.core.rollup_spec import dashboard_rollup

T = TypeVar("T")


@dataclass(frozen=True)
class TimeRange:
    key: str
    label: str
    span: timedelta

    @property
    def hourly(self) -> bool:
        return self.span > timedelta(hours=6)


RANGES = (
    TimeRange("15m", "15 min", timedelta(minutes=15)),
    TimeRange("1h", "1 hour", timedelta(hours=1)),
    TimeRange("6h", "6 hours", timedelta(hours=6)),
    TimeRange("24h", "24 hours", timedelta(hours=24)),
    TimeRange("2d", "2 days", timedelta(days=2)),
    TimeRange("7d", "7 days", timedelta(days=7)),
)
RANGES_BY_KEY = {r.key: r for r in RANGES}
DEFAULT_RANGE = RANGES_BY_KEY["6h"]
TOP_DEVICES = 10
TOP_CUSTOMERS = 100  # the customer selector's choices, busiest first
BREAKDOWN_LIMIT = 20  # the Breakdown card's values, most counted first


@dataclass(frozen=True)
class Tables:
    """The rollups of one bucket size; `bucket` is their time column (the lab's names)."""

    bucket: str
    customer_totals: str
    totals: str
    dimensions: str
    events: str  # the lab's per-customer rollup by event_type, country, browser


FIVE_MINUTE_TABLES = Tables(
    "minute",
    "rollup_customer_totals_5min",
    "rollup_totals_5min",
    "rollup_dimensions_5min",
    "rollup_events_5min",
)
HOURLY_TABLES = Tables(
    "hour",
    "rollup_customer_totals_1hr",
    "rollup_totals_1hr",
    "rollup_dimensions_1hr",
    "rollup_events_1hr",
)
BATCHES_TABLE = "clickstream_ingest_batches"
TENANTS_VIEW = "clickstream_tenant_freshness"  # the tenant rows with their delay to the rollups
SLOWEST_TENANTS = 5


@dataclass(frozen=True)
class View:
    range: TimeRange = DEFAULT_RANGE
    customer_id: int | None = None  # None: all customers
    schema: str = "public"

    @property
    def tables(self) -> Tables:
        return HOURLY_TABLES if self.range.hourly else FIVE_MINUTE_TABLES

    def table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"span": self.range.span, "customer": self.customer_id, **extra}


@dataclass(frozen=True)
class Kpis:
    events: int
    devices: int
    sessions: int


@dataclass(frozen=True)
class TrendPoint:
    bucket: datetime
    events: int
    devices: int
    sessions: int


@dataclass(frozen=True)
class BreakdownRow:
    event_type: str | None
    country: str | None
    browser: str | None
    events: int


@dataclass(frozen=True)
class Ranked:
    """A device (of one customer) or a customer, with its events."""

    key: str
    events: int


@dataclass(frozen=True)
class FreshnessPoint:
    bucket: datetime
    batches: int
    max_delay_seconds: float | None  # the bucket's slowest record, Kafka -> events
    max_rollup_delay_seconds: float | None  # the same, Kafka -> every rollup (None: not yet)


@dataclass(frozen=True)
class SlowTenant:
    customer_id: str
    max_delay_seconds: float  # its slowest record in the range
    rows: int  # written in the batches it was named in
    max_rollup_delay_seconds: float | None  # its slowest record, Kafka -> every rollup


@dataclass(frozen=True)
class PipelineStatus:
    batches: int  # in the range
    rows_written: int  # in the range
    dead_letters: int  # in the range
    last_committed_at: datetime | None
    last_rows_per_second: float | None
    last_delay_seconds: float | None  # Kafka timestamp -> commit, the batch's slowest row
    last_query_name: str | None
    last_batch_id: int | None


Query = tuple[sql.Composed, dict[str, Any]]


@dataclass(frozen=True)
class Panel(Generic[T]):
    """A named query and how to read its rows; `applies` says whether a view shows it, and
    `by_customer` whether its result depends on the chosen customer."""

    name: str
    query: Callable[[View], Query]
    read: Callable[[list[tuple[Any, ...]]], T]
    applies: Callable[[View], bool] = lambda view: True
    by_customer: bool = True

    def run(self, cur: cursor, view: View) -> T:
        cur.execute(*self.query(view))
        return self.read(cur.fetchall())


def _in_range(view: View, *, by_customer: bool) -> sql.Composed:
    """The WHERE clause of a view: its buckets, and its customer where the table has one."""
    bucket = sql.Identifier(view.tables.bucket)
    clause = sql.SQL("{b} >= now() - %(span)s AND {b} <= now()").format(b=bucket)
    if by_customer and view.customer_id is not None:
        return sql.SQL("customer_id = %(customer)s AND ") + clause
    return sql.Composed([clause])


def _totals_table(view: View) -> sql.Identifier:
    tables = view.tables
    return view.table(tables.totals if view.customer_id is None else tables.customer_totals)


def _kpis_query(view: View) -> Query:
    text = sql.SQL(
        """SELECT coalesce(sum(event_count), 0)::bigint,
                  coalesce(round(hll_cardinality(hll_union_agg(device_distinct_count))), 0)::bigint,
                  coalesce(round(hll_cardinality(hll_union_agg(session_distinct_count))), 0)::bigint
           FROM {table} WHERE {where}"""
    ).format(table=_totals_table(view), where=_in_range(view, by_customer=True))
    return text, view.params()


def _trend_query(view: View) -> Query:
    # one row per bucket in either table (all customers, or one customer's)
    text = sql.SQL(
        """SELECT {bucket}, event_count,
                  coalesce(round(hll_cardinality(device_distinct_count)), 0)::bigint,
                  coalesce(round(hll_cardinality(session_distinct_count)), 0)::bigint
           FROM {table} WHERE {where} ORDER BY 1"""
    ).format(
        bucket=sql.Identifier(view.tables.bucket),
        table=_totals_table(view),
        where=_in_range(view, by_customer=True),
    )
    return text, view.params()


def _breakdown_query(view: View) -> Query:
    tables = view.tables
    table = tables.dimensions if view.customer_id is None else tables.events
    text = sql.SQL(
        """SELECT event_type, country, browser, sum(event_count)::bigint
           FROM {table} WHERE {where} GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3"""
    ).format(table=view.table(table), where=_in_range(view, by_customer=True))
    return text, view.params()


def _top_devices_query(view: View) -> Query:
    text = sql.SQL(
        """SELECT item, frequency
           FROM topn((SELECT topn_union_agg(top_devices_1000) FROM {table} WHERE {where}),
                     %(limit)s)"""
    ).format(table=view.table(view.tables.customer_totals), where=_in_range(view, by_customer=True))
    return text, view.params(limit=TOP_DEVICES)


def _top_customers_query(view: View) -> Query:
    text = sql.SQL(
        """SELECT customer_id::text, sum(event_count)::bigint
           FROM {table} WHERE {where}
           GROUP BY customer_id ORDER BY 2 DESC, customer_id LIMIT %(limit)s"""
    ).format(
        table=view.table(view.tables.customer_totals), where=_in_range(view, by_customer=False)
    )
    return text, view.params(limit=TOP_CUSTOMERS)


def _pipeline_query(view: View) -> Query:
    text = sql.SQL(
        """SELECT w.batches, w.rows_written, w.dead_letters, last.committed_at,
                  last.rows_per_second, last.max_delay_seconds, last.query_name, last.batch_id
           FROM (SELECT count(*) AS batches,
                        coalesce(sum(rows_written), 0)::bigint AS rows_written,
                        coalesce(sum(rows_dead_lettered), 0)::bigint AS dead_letters
                 FROM {table} WHERE committed_at >= now() - %(span)s) AS w
           LEFT JOIN LATERAL (
               SELECT committed_at, rows_per_second, max_delay_seconds, query_name, batch_id
               FROM {table} ORDER BY committed_at DESC LIMIT 1) AS last ON true"""
    ).format(table=view.table(BATCHES_TABLE))
    return text, view.params()


def _freshness_query(view: View) -> Query:
    """Per bucket of the view's size: the batches and the worst Kafka-to-database delay."""
    text = sql.SQL(
        """SELECT date_bin(%(step)s, committed_at, timestamptz '2000-01-01') AS bucket,
                  count(*), max(max_delay_seconds),
                  max(max_delay_seconds + extract(epoch FROM rolled_up_at - committed_at))::float8
           FROM {table} WHERE committed_at >= now() - %(span)s
           GROUP BY 1 ORDER BY 1"""
    ).format(table=view.table(BATCHES_TABLE))
    step = timedelta(hours=1) if view.range.hourly else timedelta(minutes=5)
    return text, view.params(step=step)


def _slowest_tenants_query(view: View) -> Query:
    """The customers whose records waited longest in the range, from the batches' tenant rows."""
    text = sql.SQL(
        """SELECT customer_id, max(max_delay_seconds), sum(rows_written)::bigint,
                  max(max_rollup_delay_seconds)
           FROM {table}
           WHERE committed_at >= now() - %(span)s AND customer_id IS NOT NULL
           GROUP BY customer_id ORDER BY 2 DESC, customer_id LIMIT %(limit)s"""
    ).format(table=view.table(TENANTS_VIEW))
    return text, view.params(limit=SLOWEST_TENANTS)


def _one_customer(view: View) -> bool:
    return view.customer_id is not None


KPIS: Panel[Kpis] = Panel("kpis", _kpis_query, lambda rows: Kpis(*rows[0]))
TREND: Panel[list[TrendPoint]] = Panel(
    "trend", _trend_query, lambda rows: [TrendPoint(*row) for row in rows]
)
BREAKDOWN: Panel[list[BreakdownRow]] = Panel(
    "breakdown", _breakdown_query, lambda rows: [BreakdownRow(*row) for row in rows]
)
TOP_DEVICES_PANEL: Panel[list[Ranked]] = Panel(
    "top_devices",
    _top_devices_query,
    lambda rows: [Ranked(str(key), int(n)) for key, n in rows],
    applies=_one_customer,
)
TOP_CUSTOMERS_PANEL: Panel[list[Ranked]] = Panel(
    "top_customers",
    _top_customers_query,
    lambda rows: [Ranked(k, int(n)) for k, n in rows],
    by_customer=False,
)
PIPELINE: Panel[PipelineStatus] = Panel(
    "pipeline", _pipeline_query, lambda rows: PipelineStatus(*rows[0]), by_customer=False
)
FRESHNESS: Panel[list[FreshnessPoint]] = Panel(
    "freshness",
    _freshness_query,
    lambda rows: [FreshnessPoint(*row) for row in rows],
    by_customer=False,
)
SLOWEST_TENANTS_PANEL: Panel[list[SlowTenant]] = Panel(
    "slowest_tenants",
    _slowest_tenants_query,
    lambda rows: [
        SlowTenant(str(c), float(d), int(n), None if r is None else float(r)) for c, d, n, r in rows
    ],
    by_customer=False,
)
PANELS: Sequence[Panel[Any]] = (
    KPIS,
    TREND,
    BREAKDOWN,
    TOP_DEVICES_PANEL,
    TOP_CUSTOMERS_PANEL,
    PIPELINE,
    FRESHNESS,
    SLOWEST_TENANTS_PANEL,
)


@dataclass(frozen=True)
class DimensionValue:
    """One value of a dimension (None: the events without it) with the card's measures."""

    value: Any
    measures: tuple[Any, ...]  # in `DashboardRollup.measures` order; a sum may be None


@dataclass(frozen=True)
class DashboardRollup:
    """The model's dashboard rollup (`dashboard = true`) as the Breakdown card reads it."""

    table: str
    bucket: str
    granularity: str
    tenant: str | None  # its tenant column, when it is keyed by the tenant
    tenant_is_text: bool
    dimensions: tuple[str, ...]  # offered by the card: all but the tenant
    # (column, header, kind): the first count (ranks the values), then the other counts
    # and the sums, in the model's order; maxima, minima, HLL and TopN do not add up by value
    measures: tuple[tuple[str, str, str], ...]

    @classmethod
    def of(cls, model: EventModel) -> DashboardRollup | None:
        found = dashboard_rollup(model)
        if found is None:
            return None
        table, spec = found
        additive = [(n, m.label or n, m.kind) for n, m in spec.measures.items()]
        additive = [m for m in additive if m[2] in ("count", "sum")]
        first = next(m for m in additive if m[2] == "count")  # the model says there is one
        tenant = model.tenant if model.tenant in spec.dimensions else None
        return cls(
            table=table,
            bucket=spec.bucket,
            granularity=spec.granularity,
            tenant=tenant,
            tenant_is_text=model.fields[model.tenant].type == "text",
            dimensions=spec.breakdowns(model),
            measures=(first, *(m for m in additive if m != first)),
        )

    def choose(self, value: object) -> str:
        """The dimension asked for when the card offers it, else its first."""
        return value if isinstance(value, str) and value in self.dimensions else self.dimensions[0]

    def query(self, view: View, dimension: str) -> Query:
        """The top values of `dimension` over the view's range (and its customer, when the
        rollup has the tenant), by the first count; every name quoted."""
        if dimension not in self.dimensions:
            raise ValueError(f"{dimension!r} is not a dimension the card offers")
        bucket = sql.Identifier(self.bucket)
        where = sql.SQL("{b} >= now() - %(span)s AND {b} <= now()").format(b=bucket)
        customer: object = view.customer_id
        if self.tenant is not None and customer is not None:
            where = sql.SQL("{t} = %(customer)s AND ").format(t=sql.Identifier(self.tenant)) + where
            customer = str(customer) if self.tenant_is_text else customer
        sums = [
            sql.SQL("sum({c})::bigint" if kind == "count" else "sum({c})").format(
                c=sql.Identifier(column)
            )
            for column, _, kind in self.measures
        ]
        text = sql.SQL(
            """SELECT {dimension}, {sums}
           FROM {table} WHERE {where}
           GROUP BY 1 ORDER BY 2 DESC, 1 NULLS LAST LIMIT %(limit)s"""
        ).format(
            dimension=sql.Identifier(dimension),
            sums=sql.SQL(", ").join(sums),
            table=view.table(self.table),
            where=where,
        )
        return text, {**view.params(limit=BREAKDOWN_LIMIT), "customer": customer}


def load_breakdown(
    conn: connection, rollup: DashboardRollup, view: View, dimension: str
) -> list[DimensionValue]:
    """The Breakdown card's rows for a view and a dimension, in a transaction of their own."""
    try:
        with conn.cursor() as cur:
            cur.execute(*rollup.query(view, dimension))
            return [DimensionValue(row[0], tuple(row[1:])) for row in cur.fetchall()]
    finally:
        conn.rollback()  # read-only: nothing to keep


@dataclass(frozen=True)
class Snapshot:
    """Every panel of one view, read in one transaction (one snapshot, one now())."""

    view: View
    at: datetime  # the database's now()
    kpis: Kpis
    trend: list[TrendPoint]
    breakdown: list[BreakdownRow]
    top_devices: list[Ranked] | None  # None: all customers (devices belong to a customer)
    top_customers: list[Ranked]
    pipeline: PipelineStatus
    freshness: list[FreshnessPoint]
    slowest_tenants: list[SlowTenant]


def prepare_session(conn: connection, statement_timeout_ms: int = 5000) -> None:
    """Read-only, repeatable-read transactions, times in UTC and a statement timeout."""
    conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
    with conn.cursor() as cur:
        cur.execute(
            """SELECT set_config('statement_timeout', %s, false),
                      set_config('TimeZone', 'UTC', false)""",
            (f"{statement_timeout_ms}ms",),
        )
    conn.commit()


def load_snapshot(conn: connection, view: View) -> Snapshot:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT now()")
            (at,) = cur.fetchone()
            return Snapshot(
                view=view,
                at=at,
                kpis=KPIS.run(cur, view),
                trend=TREND.run(cur, view),
                breakdown=BREAKDOWN.run(cur, view),
                top_devices=TOP_DEVICES_PANEL.run(cur, view) if _one_customer(view) else None,
                top_customers=TOP_CUSTOMERS_PANEL.run(cur, view),
                pipeline=PIPELINE.run(cur, view),
                freshness=FRESHNESS.run(cur, view),
                slowest_tenants=SLOWEST_TENANTS_PANEL.run(cur, view),
            )
    finally:
        conn.rollback()  # read-only: nothing to keep; ends the snapshot
