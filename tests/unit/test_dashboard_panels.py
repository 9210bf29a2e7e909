"""Dashboard panels: which tables each view reads (never raw events), and the selectors."""

from __future__ import annotations

import pytest
from psycopg2 import sql

from clickstream_pipeline.dashboard.app import ALL_CUSTOMERS, parse_view
from clickstream_pipeline.dashboard.panels import DEFAULT_RANGE, PANELS, RANGES, View

ROLLUPS_5MIN = {
    "rollup_customer_totals_5min",
    "rollup_totals_5min",
    "rollup_dimensions_5min",
    "rollup_events_5min",
}
ROLLUPS_1HR = {name.replace("_5min", "_1hr") for name in ROLLUPS_5MIN}
BOOKKEEPING = {"clickstream_ingest_batches", "clickstream_tenant_freshness"}


def tables_read(composed: sql.Composable) -> set[tuple[str, ...]]:
    """Schema-qualified identifiers (schema, table) anywhere in a composed query."""
    if isinstance(composed, sql.Identifier):
        return {composed.strings} if len(composed.strings) == 2 else set()
    if isinstance(composed, sql.Composed):
        return set().union(*(tables_read(part) for part in composed.seq))
    return set()


def views() -> list[View]:
    return [View(r, customer, "web") for r in RANGES for customer in (None, 42)]


@pytest.mark.parametrize("view", views(), ids=lambda v: f"{v.range.key}-{v.customer_id}")
def test_every_panel_reads_rollups_of_the_ranges_bucket_size_or_bookkeeping(view):
    allowed = (ROLLUPS_1HR if view.range.hourly else ROLLUPS_5MIN) | BOOKKEEPING
    for panel in PANELS:
        text, params = panel.query(view)
        read = tables_read(text)
        assert read, panel.name
        assert all(schema == "web" for schema, _ in read), panel.name  # config's schema
        assert {table for _, table in read} <= allowed, (panel.name, read)
        assert params["span"] == view.range.span


def test_ranges_up_to_six_hours_read_five_minute_buckets():
    assert [r.key for r in RANGES if not r.hourly] == ["15m", "1h", "6h"]
    assert not DEFAULT_RANGE.hourly


def test_selectors_map_to_views():
    assert parse_view(ALL_CUSTOMERS, None, "public") == View(DEFAULT_RANGE, None, "public")
    chosen = parse_view("17", "7d", "web")
    assert (chosen.customer_id, chosen.range.key, chosen.schema) == (17, "7d", "web")
    assert parse_view(None, "no-such-range", "public").range == DEFAULT_RANGE
