"""Freshness per tenant: the busiest and slowest customers by name, the rest as one "other"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickstream_pipeline.ingest.tenants import TenantFreshness, tenant_freshness

COMMIT = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def row(customer: int, rows: int, oldest_s_ago: float, newest_s_ago: float) -> dict:
    """A sink task's "tenant" row, timestamps naive in the driver's zone as Spark returns them."""
    local = (COMMIT - timedelta(seconds=oldest_s_ago)).astimezone().replace(tzinfo=None)
    newest = (COMMIT - timedelta(seconds=newest_s_ago)).astimezone().replace(tzinfo=None)
    return {"customer_id": customer, "rows_in": rows, "oldest": local, "newest": newest}


def test_the_busiest_and_the_slowest_are_named_and_the_rest_summed():
    rows = [row(c, 100 - c, oldest_s_ago=1 + c % 7, newest_s_ago=0.5) for c in range(1, 26)]
    # customer 3 also wrote to a second partition: more rows, and an older record there
    rows.append(row(3, 500, oldest_s_ago=30, newest_s_ago=0.1))
    got = tenant_freshness(rows, COMMIT, top=3)
    named = {t.customer_id for t in got if t.customer_id is not None}
    busiest = {3, 1, 2}  # 3 with 597 rows, then 1 (99) and 2 (98)
    slowest = {3, 6, 13}  # oldest 30 s, then 7 s (6, 13, 20: ties go to the lower id)
    assert named == busiest | slowest
    three = next(t for t in got if t.customer_id == 3)
    assert three == TenantFreshness(3, 1, 597, 30.0, 0.1)
    assert [t.max_delay_s for t in got[:-1]] == sorted(
        (t.max_delay_s for t in got[:-1]), reverse=True
    )
    other = got[-1]
    assert other.customer_id is None and other.label == "other"
    assert other.customers == 25 - len(named)
    assert other.rows == sum(r["rows_in"] for r in rows) - sum(t.rows for t in got[:-1])
    assert other.max_delay_s == 7.0 and other.min_delay_s == 0.5  # customer 20


def test_no_other_when_every_customer_is_named_and_nothing_when_off():
    rows = [row(1, 5, 2, 1), row(2, 3, 4, 1)]
    got = tenant_freshness(rows, COMMIT, top=10)
    assert [(t.customer_id, t.rows, t.max_delay_s) for t in got] == [(2, 3, 4.0), (1, 5, 2.0)]
    assert tenant_freshness(rows, COMMIT, top=0) == []
    assert tenant_freshness([], COMMIT, top=10) == []
