"""Rollups in the event model: what a rollup may say, and the SQL generated from it."""

from __future__ import annotations

import re

import pytest

from clickstream_pipeline.core.model import LAB, ModelError, load_model, parse_model
from clickstream_pipeline.warehouse.rollups import (
    function_sql,
    functions,
    insert_sql,
    rebuild_sql,
    view_sql,
)

MODEL = """
[event]
tenant = "shop"
[event.fields]
shop = { type = "bigint", required = true }
page = { type = "text" }
price = { type = "numeric" }
[rollups.pages_1h]
granularity = "1h"
dimensions = ["shop", "page"]
measures.views = "count"
"""


def with_rollup(text: str) -> str:
    return MODEL + "[rollups.r]\n" + text


@pytest.mark.parametrize(
    ("rollup", "named"),
    [
        (
            'granularity = "1h"\ndimensions = ["colour"]\nmeasures.n = "count"',
            r"rollups\.r\.dimensions: 'colour' is not one of the fields",
        ),
        (
            'granularity = "1h"\nmeasures.total = { sum = "page" }',
            r"rollups\.r\.measures\.total: a sum of 'page' \(text\) needs a number",
        ),
        (
            'granularity = "1h"\nmeasures.n = { count = true, sum = "price" }',
            r"rollups\.r\.measures\.n: .*give one of count",
        ),
        ('granularity = "7m"\nmeasures.n = "count"', r"rollups\.r\.granularity: .*divides 1d"),
        (
            'granularity = "1h"\ndimensions = ["page", "shop"]\nmeasures.n = "count"',
            r"the tenant 'shop' goes first",
        ),
        (
            'granularity = "1h"\nmeasures.n = "count"\nmeasures.m = { distinct = "price" }',
            r"measures\.m: a distinct count of numeric 'price'",
        ),
        (
            'granularity = "1h"\nmeasures.n = "count"\nview = "bi_pages_1h"',
            r"rollups\.r\.view: 'bi_pages_1h' is taken",
        ),
        (
            'granularity = "1h"\nmeasures.n = "count"\nfunction = "pages_1h_aggregation"',
            r"one window and schedule per function",
        ),
        (
            'granularity = "1h"\nbucket = "page"\nmeasures.n = "count"',
            r"rollups\.r\.bucket: 'page' is a column of events",
        ),
        (
            'granularity = "1h"\nmeasures.n = "count"\nmeasures.m = { count = true, label = "n" }',
            r"two columns of its view",
        ),
        (
            'granularity = "1d"\nmeasures.n = "count"\nsource = "pages"',
            r"rollups\.r\.source: 'pages' is neither events nor a rollup of the model",
        ),
        (
            'granularity = "5m"\nmeasures.n = "count"\nsource = "pages_1h"',
            r"rollups\.r\.granularity: 5m is finer than its source's 1h",
        ),
        (
            'granularity = "1d"\ndimensions = ["shop", "price"]\nmeasures.n = "count"\n'
            'source = "pages_1h"',
            r"rollups\.r\.dimensions: 'price' is not a dimension of its source pages_1h",
        ),
        (
            'granularity = "1d"\ndimensions = ["page"]\nmeasures.n = "count"\nsource = "pages_1h"',
            r"rollups\.r\.dimensions: the tenant 'shop' is a dimension of its source: keep it",
        ),
        (
            'granularity = "1d"\nmeasures.paid = { sum = "price" }\nsource = "pages_1h"',
            r"rollups\.r\.measures\.paid: its source pages_1h has no sum of 'price'",
        ),
    ],
)
def test_a_rollup_that_does_not_fit_the_model_is_refused_naming_its_key(rollup: str, named: str):
    with pytest.raises(ModelError, match=named):
        parse_model(with_rollup(rollup))


def test_two_rollups_of_one_name_and_horizons_shorter_than_a_bucket_are_refused():
    with pytest.raises(
        ModelError, match=r"not valid TOML: Cannot declare \('rollups', 'pages_1h'\) twice"
    ):
        parse_model(MODEL + '[rollups.pages_1h]\ngranularity = "1d"\nmeasures.n = "count"\n')
    short = MODEL + '[retention]\nrollup = { pages_1h = "30m" }\n'
    with pytest.raises(
        ModelError, match=r"rollups\.pages_1h\.granularity: longer than its retention 30m"
    ):
        parse_model(short)
    daily = (
        MODEL.replace('granularity = "1h"', 'granularity = "1d"') + '[retention]\nevents = "2d"\n'
    )
    with pytest.raises(
        ModelError, match=r"retention\.events 2d is shorter than a 1d bucket and time\.max_past 2d"
    ):
        parse_model(daily)


def test_the_labs_rollups_keep_their_tables_functions_and_schedules():
    assert [(f.name, f.window, f.schedule, len(f.tables)) for f in functions(LAB)] == [
        ("five_minutely_aggregation", "rollup_events_5min", "*/5 * * * *", 1),
        ("hourly_aggregation", "rollup_events_1hr", "*/5 * * * *", 1),
        ("dashboard_aggregation", "dashboard_rollups", "* * * * *", 6),
    ]
    spec = LAB.rollups["rollup_events_5min"]
    assert spec.columns() == (
        "customer_id",
        "event_type",
        "country",
        "browser",
        "minute",
        "event_count",
        "device_distinct_count",
        "session_distinct_count",
        "top_devices_1000",
    )
    five = insert_sql("rollup_events_5min", spec, LAB)
    # migration 0010's bucket and single-event fast path; the dashboard's rollups aggregate all
    assert "date_trunc('seconds', (\"event_time\" - TIMESTAMP 'epoch') / 300) * 300" in five
    assert 'THEN hll_add(hll_empty(14), hll_hash_bigint(min("device_id")))' in five
    assert "_group_size" not in insert_sql(
        "rollup_customer_totals_5min", LAB.rollups["rollup_customer_totals_5min"], LAB
    )
    assert "date_trunc('hour', \"event_time\")" in insert_sql(
        "rollup_events_1hr", LAB.rollups["rollup_events_1hr"], LAB
    )
    view = view_sql("rollup_totals_5min", LAB.rollups["rollup_totals_5min"])
    assert re.sub(r'"', "", view).splitlines()[1] == (
        "SELECT minute AS bucket_start, event_count AS events, "
        "round(hll_cardinality(device_distinct_count))::bigint AS distinct_devices, "
        "round(hll_cardinality(session_distinct_count))::bigint AS distinct_sessions"
    )


def test_a_teams_measures_merge_as_their_kind_says():
    model = load_model("web_analytics")
    campaigns = functions(model)[0]
    body = function_sql(campaigns, model)
    assert "FROM incremental_rollup_window('rollup_campaigns_1hr')" in body
    for merged in (
        '"events" = t."events" + excluded."events"',
        '"revenue" = coalesce(t."revenue" + excluded."revenue", t."revenue", excluded."revenue")',
        '"largest_order" = greatest(t."largest_order", excluded."largest_order")',
        '"sessions" = hll_union(t."sessions", excluded."sessions")',
        '"top_pages" = topn_union(t."top_pages", excluded."top_pages")',
    ):
        assert merged in body
    assert 'topn_add_agg("page_url"::text)' in body


def test_a_rollup_of_a_rollup_replaces_the_buckets_its_window_touches():
    model = load_model("web_analytics")
    daily = model.rollups["rollup_campaigns_1d"]
    (function,) = [f for f in functions(model) if f.source == "rollup_campaigns_1hr"]
    assert function.run_order > functions(model)[0].run_order  # after its source
    touched = rebuild_sql("rollup_campaigns_1d", daily, model, touched=True)
    # merged from the hourly rows of the (tenant, source, day) keys the window's events touch
    for part in (
        'sum(s."events")::bigint AS "events"',
        'sum(s."revenue")::numeric AS "revenue"',
        'max(s."largest_order") AS "largest_order"',
        'hll_union_agg(s."sessions") AS "sessions"',
        'topn_union_agg(s."top_pages") AS "top_pages"',
        'FROM public."rollup_campaigns_1hr" AS s',
        "WHERE event_id BETWEEN start_id AND end_id",
        's."customer_id" = k."customer_id"',  # the tenant: on the shards
        's."utm_source" IS NOT DISTINCT FROM k."utm_source"',  # NULL is a value too
        '"events" = excluded."events"',  # replaced, not added: a rerun stays right
    ):
        assert part in touched, part
    every = rebuild_sql("rollup_campaigns_1d", daily, model, touched=False)
    assert "event_id" not in every and "JOIN" not in every
    body = function_sql(function, model)
    assert "WHERE name = 'rollup_campaigns_1hr'" in body  # its window follows the source's


def test_a_source_kept_shorter_than_a_bucket_it_rebuilds_is_refused():
    derived = (
        '[rollups.r]\ngranularity = "1d"\nsource = "pages_1h"\ndimensions = ["shop"]\n'
        'measures.views = "count"\n'
    )
    parse_model(MODEL + derived)  # the source kept as long as the rest: fine
    with pytest.raises(ModelError, match=r"rollups\.r\.source: pages_1h is kept 2d, shorter"):
        parse_model(MODEL + derived + '[retention]\nrollup = { pages_1h = "2d" }\n')


def dashboard_on(text: str, table: str) -> str:
    """`text` with `dashboard = true` on rollup `table`."""
    header = f"[rollups.{table}]\n"
    assert header in text
    return text.replace(header, header + "dashboard = true\n")


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (
            dashboard_on(
                dashboard_on(
                    with_rollup('granularity = "1h"\ndimensions = ["page"]\nmeasures.n = "count"'),
                    "pages_1h",
                ),
                "r",
            ),
            r"rollups\.r\.dashboard: pages_1h sets it already: one dashboard rollup per model",
        ),
        (
            dashboard_on(
                with_rollup(
                    'granularity = "1h"\ndimensions = ["page"]\nmeasures.p = { sum = "price" }'
                ),
                "r",
            ),
            r"rollups\.r\.dashboard: .*no count measure to rank by",
        ),
        (
            dashboard_on(
                with_rollup('granularity = "1h"\ndimensions = ["shop"]\nmeasures.n = "count"'), "r"
            ),
            r"rollups\.r\.dashboard: .*no dimension but the tenant to break down by",
        ),
    ],
    ids=["two", "no-count", "tenant-only"],
)
def test_a_dashboard_rollup_is_one_per_model_with_a_count_to_rank_by(model: str, named: str):
    with pytest.raises(ModelError, match=named):
        parse_model(model)


def test_the_dashboard_rollup_is_the_one_that_says_so_and_leaves_its_sql_as_it_was():
    from clickstream_pipeline.core.rollup_spec import dashboard_rollup
    from clickstream_pipeline.warehouse.rollups import definition

    web = load_model("web_analytics")
    found = dashboard_rollup(web)
    assert found is not None and found[0] == "rollup_campaigns_1hr"
    assert [t for t, s in web.rollups.items() if s.dashboard] == ["rollup_campaigns_1hr"]
    assert dashboard_rollup(LAB) is None and not any(s.dashboard for s in LAB.rollups.values())
    # what the bootstrap compares: a database generated before the flag keeps its rollups
    flagged = found[1]
    plain = flagged.model_copy(update={"dashboard": False})
    assert definition(flagged, web) == definition(plain, web)
    assert "dashboard" not in definition(flagged, web)["spec"]
    assert parse_model(dashboard_on(MODEL, "pages_1h")).rollups["pages_1h"].dashboard
