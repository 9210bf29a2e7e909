"""The Breakdown card of a model with a dashboard rollup (`web_analytics`: hourly campaigns):
`clickstream-dashboard` started with that model shows, per source or campaign, the counts and
revenue the raw events give for the chosen range and customer; started with the lab's model
it serves the page it always did.

The dashboard runs as its entry point against a scratch database, logged in as a member of
the read-only role, and is read through Dash's callback route (as the page asks for it).
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from clickstream_pipeline.dashboard.app import OUTPUTS
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.db import bootstrapped_database, drop_login, execute, query
from tests.integration.test_dashboard import read_only_login, rollups, start_dashboard
from tests.unit.test_dashboard_breakdown import callback_request

# 4,000 events over the last 20 hours (hourly buckets inside a day), 400 three days old
# (inside a week only); sources and campaigns skewed, some absent (NULL), revenue on a third
WEB_EVENTS = """
INSERT INTO events (event_time, customer_id, session_id, event_type, page_url, utm_source,
                    utm_campaign, revenue)
SELECT now() - interval '2 hours' - (i % 18) * interval '1 hour' - {ago},
       1 + i % 3, 1 + i % 700, 'page_view', 'https://shop.example/p/' || (i % 40),
       CASE WHEN i % 10 < 4 THEN 'google' WHEN i % 10 < 7 THEN NULL
            WHEN i % 10 < 9 THEN 'newsletter' ELSE 'bing' END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE 'Spring Sale ' || (i % 5) END,
       CASE WHEN i % 3 = 0 THEN (i % 50) + 0.25 END
FROM generate_series({first}, {last}) AS i"""
# what the card shows, from the raw events: the rollup's hourly buckets that start in the range
EXACT = """SELECT {dimension}, count(*), sum(revenue) FROM events
           WHERE date_trunc('hour', event_time) >= now() - %(span)s::interval
             AND date_trunc('hour', event_time) <= now() {customer}
           GROUP BY 1"""
SPANS = {"24h": "24 hours", "7d": "7 days"}


@dataclass
class Loaded:
    db: ConnectionParams
    reader: ConnectionParams  # the dashboard's login, in the read-only role


@dataclass
class Served:
    db: ConnectionParams
    url: str


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=20)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def breakdown_shown(url: str, dimension: str, customer: str, range_key: str) -> dict[str, Any]:
    """The card's outputs for a selection, as the page's callback request gets them."""
    request = urllib.request.Request(
        url + "_dash-update-component",
        data=json.dumps(callback_request(dimension, customer, range_key)).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["response"]


def rows_of(shown: dict[str, Any]) -> list[tuple[str | None, int, Decimal | None]]:
    """The table's rows in order: (value or None, events, revenue or None)."""
    out = []
    for row in shown["breakdown-table"]["children"]:
        props = row["props"]
        if "data-key" not in props:
            continue  # the header
        value = None if props.get("data-null") == "true" else props["data-key"]
        events, revenue = (
            c["props"]["children"]["props"]["data-value"] for c in props["children"][1:]
        )
        out.append((value, int(events), Decimal(revenue) if revenue else None))
    return out


@pytest.fixture(scope="module")
def loaded(tier) -> Iterator[Loaded]:
    """A database (both models) of web_analytics events with its rollups run."""
    with bootstrapped_database(tier.db) as db:
        execute(
            db,
            WEB_EVENTS.format(ago="interval '0'", first=1, last=4000),
            WEB_EVENTS.format(ago="interval '3 days'", first=4001, last=4400),
        )
        rollups(db)
        reader = read_only_login(db)
        try:
            yield Loaded(db, reader)
        finally:
            drop_login(db, reader)


@pytest.fixture(scope="module")
def web(loaded: Loaded, tmp_path_factory) -> Iterator[Served]:
    """The dashboard started with the web_analytics model."""
    log = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
    process, url = start_dashboard(loaded.reader, log, "--set", "ingest.model=web_analytics")
    try:
        yield Served(loaded.db, url)
    finally:
        stop(process)


@pytest.mark.parametrize(
    ("dimension", "customer", "range_key"),
    [
        ("utm_source", "all", "24h"),
        ("utm_campaign", "all", "24h"),
        ("utm_source", "2", "24h"),
        ("utm_campaign", "3", "7d"),
    ],
)
def test_the_breakdown_equals_the_raw_events_for_the_chosen_dimension_and_customer(
    web: Served, dimension: str, customer: str, range_key: str
):
    shown = breakdown_shown(web.url, dimension, customer, range_key)
    rows = rows_of(shown)
    one = "" if customer == "all" else f"AND customer_id = {int(customer)}"
    exact = query(
        web.db,
        EXACT.format(dimension=dimension, customer=one),
        {"span": SPANS[range_key]},
    )
    assert len(exact) > 2 and any(value is None for value, *_ in exact)  # NULL is a value too
    assert {value: (n, revenue) for value, n, revenue in rows} == {
        value: (n, revenue) for value, n, revenue in exact
    }
    counts = [n for _, n, _ in rows]
    assert counts == sorted(counts, reverse=True)  # ranked by the count
    labels = [
        c["props"]["children"]
        for r in shown["breakdown-table"]["children"][1:]
        for c in r["props"]["children"][:1]
    ]
    assert "(none)" in labels
    assert shown["breakdown-status"]["children"] == ""
    who = "all customers" if customer == "all" else f"customer {customer}"
    assert dimension in shown["breakdown-title"]["children"]
    assert who in shown["breakdown-title"]["children"]


def test_the_week_counts_the_old_events_the_day_leaves_out(web: Served):
    day = sum(n for _, n, _ in rows_of(breakdown_shown(web.url, "utm_source", "all", "24h")))
    week = sum(n for _, n, _ in rows_of(breakdown_shown(web.url, "utm_source", "all", "7d")))
    assert (day, week) == (4000, 4400)


def test_the_labs_page_has_no_breakdown_card(loaded: Loaded, tmp_path):
    """The same database, the dashboard started with the lab's model (local's ingest.model)."""
    process, url = start_dashboard(loaded.reader, tmp_path / "dashboard.log")
    try:
        layout = json.dumps(get(url + "_dash-layout"))
        assert "breakdown" not in layout and "Breakdown" not in layout
        (callback,) = get(url + "_dash-dependencies")  # the page's one callback
        assert callback["output"] == ".." + "...".join(f"{e}.{p}" for e, p in OUTPUTS) + ".."
        with pytest.raises(urllib.error.HTTPError):  # no such callback to answer it
            breakdown_shown(url, "utm_source", "all", "24h")
    finally:
        stop(process)
