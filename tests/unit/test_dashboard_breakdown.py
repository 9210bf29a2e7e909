"""The Breakdown card: the model's dashboard rollup by one of its dimensions. What it reads
(quoted names, the view's range and customer), how it renders, that its cache keeps
dimensions apart, and that the lab's page has no such card."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from psycopg2 import sql

from clickstream_pipeline.core.model import LAB, load_model, parse_model
from clickstream_pipeline.dashboard.app import BREAKDOWN_OUTPUTS, OUTPUTS, create_app
from clickstream_pipeline.dashboard.panels import (
    BREAKDOWN_LIMIT,
    RANGES_BY_KEY,
    DashboardRollup,
    DimensionValue,
    Kpis,
    PipelineStatus,
    Ranked,
    Snapshot,
    View,
)
from tests.unit.test_dashboard_panels import tables_read

WEB = load_model("web_analytics")


def snapshot(view: View) -> Snapshot:
    pipeline = PipelineStatus(0, 0, 0, None, None, None, None, None)
    return Snapshot(
        view, datetime.now(UTC), Kpis(1, 1, 1), [], [], None, [Ranked("7", 1)], pipeline, [], []
    )


def identifiers(composed: sql.Composable) -> list[tuple[str, ...]]:
    if isinstance(composed, sql.Identifier):
        return [composed.strings]
    if isinstance(composed, sql.Composed):
        return [i for part in composed.seq for i in identifiers(part)]
    return []


def literal_text(composed: sql.Composable) -> str:
    """The query's SQL text without its identifiers: what was written by hand."""
    if isinstance(composed, sql.SQL):
        return composed.string
    if isinstance(composed, sql.Composed):
        return "".join(literal_text(part) for part in composed.seq)
    return ""


def test_the_web_models_rollup_offers_its_dimensions_but_the_tenant_ranked_by_its_count():
    rollup = DashboardRollup.of(WEB)
    assert rollup is not None
    assert rollup.table == "rollup_campaigns_1hr" and rollup.bucket == "bucket"
    assert rollup.tenant == "customer_id"
    assert rollup.dimensions == ("utm_source", "utm_campaign")
    # the count it ranks by first, then the other additive measures: no max, HLL or TopN
    assert rollup.measures == (("events", "events", "count"), ("revenue", "revenue", "sum"))
    assert DashboardRollup.of(LAB) is None


def test_labels_name_the_columns_and_the_first_count_ranks():
    model = parse_model(
        """
[event]
tenant = "shop"
[event.fields]
shop = { type = "text", required = true }
page = { type = "text" }
price = { type = "double" }
[rollups.r]
granularity = "1d"
dimensions = ["page"]
dashboard = true
measures.paid = { sum = "price", label = "paid_total" }
measures.views = { count = true, label = "page_views" }
measures.more = "count"
measures.cheapest = { min = "price" }
"""
    )
    rollup = DashboardRollup.of(model)
    assert rollup is not None and rollup.tenant is None  # not keyed by the tenant
    assert rollup.measures == (
        ("views", "page_views", "count"),
        ("paid", "paid_total", "sum"),
        ("more", "more", "count"),
    )
    text, _ = rollup.query(View(RANGES_BY_KEY["24h"], 7, "web"), "page")
    assert ("shop",) not in identifiers(text)  # no tenant to filter on: all customers
    assert "customer" not in literal_text(text)


@pytest.mark.parametrize("customer", [None, 42])
@pytest.mark.parametrize("dimension", ["utm_source", "utm_campaign"])
def test_its_query_reads_the_rollup_by_quoted_names_over_the_views_range_and_customer(
    dimension: str, customer: int | None
):
    rollup = DashboardRollup.of(WEB)
    assert rollup is not None
    view = View(RANGES_BY_KEY["7d"], customer, "web")
    text, params = rollup.query(view, dimension)
    assert tables_read(text) == {("web", "rollup_campaigns_1hr")}
    names = set(identifiers(text))
    assert {(dimension,), ("bucket",), ("events",), ("revenue",)} <= names
    assert (("customer_id",) in names) == (customer is not None)
    written = literal_text(text)
    for name in ("utm_", "bucket", "events", "revenue", "customer_id", "rollup_"):
        assert name not in written, name  # every name an Identifier, none formatted in
    assert "now() - %(span)s" in written and "LIMIT %(limit)s" in written
    assert params["span"] == view.range.span and params["limit"] == BREAKDOWN_LIMIT
    assert params["customer"] == customer


def test_a_text_tenant_is_compared_as_text():
    model = parse_model(
        """
[event]
tenant = "shop"
[event.fields]
shop = { type = "text", required = true }
page = { type = "text" }
[rollups.r]
granularity = "1h"
dimensions = ["shop", "page"]
dashboard = true
measures.n = "count"
"""
    )
    rollup = DashboardRollup.of(model)
    assert rollup is not None
    _, params = rollup.query(View(customer_id=42), "page")
    assert params["customer"] == "42"


def test_a_dimension_the_page_does_not_offer_is_never_queried():
    rollup = DashboardRollup.of(WEB)
    assert rollup is not None
    for crafted in ("customer_id", "revenue", 'x"; DROP TABLE events; --', None, 3, ["utm_source"]):
        assert rollup.choose(crafted) == "utm_source"  # the first, as an unknown range is
    assert rollup.choose("utm_campaign") == "utm_campaign"


def callback_request(dimension: object, customer: object = "all", range_key: str = "6h") -> dict:
    """The body Dash's page posts for the Breakdown card's callback."""
    outputs = [{"id": element, "property": prop} for element, prop in BREAKDOWN_OUTPUTS]
    return {
        "output": ".." + "...".join(f"{e}.{p}" for e, p in BREAKDOWN_OUTPUTS) + "..",
        "outputs": outputs,
        "inputs": [
            {"id": "refresh", "property": "n_intervals", "value": 1},
            {"id": "customer", "property": "value", "value": customer},
            {"id": "range", "property": "value", "value": range_key},
            {"id": "breakdown-dimension", "property": "value", "value": dimension},
        ],
        "changedPropIds": ["breakdown-dimension.value"],
        "state": [],
    }


def shown_rows(response: dict) -> dict[str, list[str]]:
    """The table's rows: data-key -> each cell's data-value."""
    rows = response["breakdown-table"]["children"]
    out = {}
    for row in rows:
        props = row["props"]
        if "data-key" in props:
            out[props["data-key"]] = [c["props"]["children"]["props"]["data-value"]
                                      for c in props["children"][1:]]  # fmt: skip
    return out


def test_the_card_shows_each_value_with_its_measures_and_keeps_dimensions_apart_in_its_cache():
    rollup = DashboardRollup.of(WEB)
    assert rollup is not None
    asked: Counter = Counter()

    def load_breakdown(view: View, dimension: str) -> list[DimensionValue]:
        asked[(view, dimension)] += 1
        if dimension == "utm_source":
            return [
                DimensionValue("google", (40, Decimal("12.50"))),
                DimensionValue(None, (30, None)),
            ]
        return [DimensionValue("Spring Sale 1", (9, Decimal("1.25")))]

    app = create_app(
        snapshot, cache_seconds=60, rollup=rollup, load_breakdown=load_breakdown
    ).server.test_client()
    app.get("/")

    def post(dimension: object, customer: object = "all") -> dict[str, Any]:
        answer = app.post("/_dash-update-component", json=callback_request(dimension, customer))
        assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
        return json.loads(answer.get_data())["response"]

    by_source = post("utm_source")
    assert shown_rows(by_source) == {"google": ["40", "12.50"], "(none)": ["30", ""]}
    table = by_source["breakdown-table"]["children"]
    assert [th["props"]["children"] for th in table[0]["props"]["children"]] == [
        "utm_source",
        "events",
        "revenue",
    ]
    assert table[2]["props"]["children"][0]["props"]["children"] == "(none)"
    assert table[2]["props"]["data-null"] == "true"
    assert "all customers" in by_source["breakdown-title"]["children"]
    # the same view by another dimension is not the cached first one
    assert shown_rows(post("utm_campaign")) == {"Spring Sale 1": ["9", "1.25"]}
    assert shown_rows(post("utm_source")) == {"google": ["40", "12.50"], "(none)": ["30", ""]}
    assert set(asked.values()) == {1}  # each (view, dimension) read once, then cached
    one = post("utm_campaign", "7")
    assert "customer 7" in one["breakdown-title"]["children"]
    assert [v.customer_id for v, _ in asked] == [None, None, 7]
    # a crafted dimension is answered as the first one
    assert shown_rows(post('x" OR 1=1')) == shown_rows(by_source)
    assert {d for _, d in asked} == {"utm_source", "utm_campaign"}


def test_the_labs_page_has_no_breakdown_card_and_one_callback():
    assert DashboardRollup.of(LAB) is None
    client = create_app(snapshot).server.test_client()
    client.get("/")
    layout = client.get("/_dash-layout").get_data(as_text=True)
    assert "breakdown" not in layout and "Breakdown" not in layout
    (callback,) = json.loads(client.get("/_dash-dependencies").get_data())
    assert callback["output"] == ".." + "...".join(f"{e}.{p}" for e, p in OUTPUTS) + ".."
    assert [i["id"] for i in callback["inputs"]] == ["refresh", "customer", "range"]


def test_the_web_models_page_has_the_card_with_its_dimensions():
    rollup = DashboardRollup.of(WEB)
    client = create_app(snapshot, rollup=rollup, load_breakdown=lambda v, d: []).server
    client = client.test_client()
    client.get("/")
    layout = json.loads(client.get("/_dash-layout").get_data())
    text = json.dumps(layout)
    assert '"Breakdown"' in text
    callbacks = json.loads(client.get("/_dash-dependencies").get_data())
    assert len(callbacks) == 2

    def find(node: Any, element_id: str) -> dict | None:
        if isinstance(node, dict):
            if node.get("props", {}).get("id") == element_id:
                return node
            return next((f for v in node.values() if (f := find(v, element_id))), None)
        if isinstance(node, list):
            return next((f for v in node if (f := find(v, element_id))), None)
        return None

    dropdown = find(layout, "breakdown-dimension")
    assert dropdown is not None
    assert [o["value"] for o in dropdown["props"]["options"]] == ["utm_source", "utm_campaign"]
    assert dropdown["props"]["value"] == "utm_source"


def test_a_rollup_without_its_loader_is_refused():
    with pytest.raises(ValueError, match="load_breakdown"):
        create_app(snapshot, rollup=DashboardRollup.of(WEB))
