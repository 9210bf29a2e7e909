"""The live dashboard: a Dash (Plotly) web app over `panels`, refreshed every few seconds.

Dash serves its JavaScript (React, Plotly) from the Python package, so the page works without
internet access. Every refresh reads all panels of the chosen view in one read-only
transaction (`server.ConnectionPool`); a database error shows in the page's status
line and the next refresh tries again.

When the model has a dashboard rollup (`panels.DashboardRollup`) the page has one more card,
the Breakdown: a dimension to choose and its top values. Its callback is its own, its rows
read apart from the snapshot and cached per view and dimension; without such a rollup the
page is the lab's, card, callback and query all absent.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Hashable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from dash import Dash, Input, Output, dcc, html, no_update
from psycopg2 import Error as PsycopgError
from pydantic import SecretStr

from clickstream_pipeline.dashboard.cache import StaleWhileReloading
from clickstream_pipeline.dashboard.figures import (
    bar_figure,
    browser_country_figure,
    freshness_figure,
    label,
    totals,
    trend_figure,
)
from clickstream_pipeline.dashboard.panels import (
    DEFAULT_RANGE,
    RANGES,
    RANGES_BY_KEY,
    DashboardRollup,
    DimensionValue,
    PipelineStatus,
    Ranked,
    SlowTenant,
    Snapshot,
    View,
)

log = logging.getLogger(__name__)

ALL_CUSTOMERS = "all"
CUSTOMER_ID = re.compile(r"[0-9]{1,18}")
CACHED_VIEWS = 256  # views (range x customer) remembered at once
K = TypeVar("K", bound=Hashable)
LoadBreakdown = Callable[[View, str], list[DimensionValue]]


def valued(text: str, value: object) -> html.Span:
    """`text` as shown, with the exact value in `data-value` (for tests and scrapers)."""
    attributes: dict[str, Any] = {"data-value": str(value)}
    return html.Span(text, **attributes)


def number(value: int | float) -> html.Span:
    """A number with thousands separators."""
    return valued(f"{value:,.0f}", value)


def tile(element_id: str, label: str) -> html.Div:
    return html.Div(
        [html.Div(label, className="tile-label"), html.Div("…", id=element_id, className="value")],
        className="tile",
    )


def graph(element_id: str, title: str) -> html.Div:
    return html.Div(
        [html.H3(title), dcc.Graph(id=element_id, config={"displayModeBar": False})],
        className="card",
    )


def breakdown_card(rollup: DashboardRollup) -> html.Div:
    """The Breakdown card: a dimension of the model's dashboard rollup and its top values."""
    return html.Div(
        [
            html.H3("Breakdown"),
            dcc.Dropdown(
                id="breakdown-dimension",
                options=[{"label": d, "value": d} for d in rollup.dimensions],
                value=rollup.dimensions[0],
                clearable=False,
                className="dimension",
            ),
            html.Div(id="breakdown-title", className="breakdown-title"),
            html.Div(
                [
                    dcc.Graph(id="breakdown-chart", config={"displayModeBar": False}),
                    html.Table(id="breakdown-table"),
                ],
                className="breakdown-body",
            ),
            html.Div(id="breakdown-status", className="status"),
        ],
        id="breakdown",
        className="card top breakdown",
    )


def layout(refresh_seconds: float, rollup: DashboardRollup | None = None) -> html.Div:
    """The page; with the model's dashboard rollup, its Breakdown card below the charts."""
    breakdown = [] if rollup is None else [breakdown_card(rollup)]
    return html.Div(
        [
            html.Header(
                [
                    html.H1("Clickstream, live"),
                    dcc.Dropdown(
                        id="customer",
                        options=[{"label": "All customers", "value": ALL_CUSTOMERS}],
                        value=ALL_CUSTOMERS,
                        clearable=False,
                        searchable=True,
                        className="customer",
                    ),
                    dcc.RadioItems(
                        id="range",
                        options=[{"label": r.label, "value": r.key} for r in RANGES],
                        value=DEFAULT_RANGE.key,
                        className="ranges",
                        inline=True,
                    ),
                    html.Div(id="updated", className="updated"),
                ]
            ),
            html.Div(id="status", className="status"),
            html.Div(
                [
                    tile("kpi-events", "events"),
                    tile("kpi-devices", "distinct devices"),
                    tile("kpi-sessions", "distinct sessions"),
                ],
                className="tiles",
            ),
            graph("trend", "Trend"),
            html.Div(
                [
                    graph("by-country", "Events by country"),
                    graph("by-event-type", "Events by event type"),
                    graph("by-browser-country", "Events by browser and country"),
                ],
                className="row",
            ),
            *breakdown,
            html.Div(
                [
                    html.Div(
                        [html.H3(id="top-title"), html.Table(id="top-table")],
                        className="card top",
                    ),
                    html.Div(
                        [
                            html.H3("Pipeline (all customers)"),
                            html.Div(
                                [
                                    tile("pipe-last-batch", "last batch (UTC)"),
                                    tile("pipe-rows-per-second", "rows/s, last batch"),
                                    tile("pipe-delay", "Kafka to database, last batch"),
                                    tile("pipe-dead-letters", "dead letters in range"),
                                ],
                                className="tiles",
                            ),
                            html.H4(
                                "Kafka to events and to the rollups, slowest record per bucket (s)"
                            ),
                            dcc.Graph(id="freshness", config={"displayModeBar": False}),
                            html.H4("Slowest customers in range"),
                            html.Table(id="slow-tenants"),
                        ],
                        className="card pipeline",
                    ),
                ],
                className="row",
            ),
            dcc.Interval(id="refresh", interval=int(refresh_seconds * 1000)),
        ],
        className="page",
    )


def ranked_table(header: tuple[str, str], rows: list[Ranked]) -> list[html.Tr]:
    head = html.Tr([html.Th(header[0]), html.Th(header[1])])
    rows_html = []
    for r in rows:
        attributes: dict[str, Any] = {"data-key": r.key}
        rows_html.append(html.Tr([html.Td(r.key), html.Td(number(r.events))], **attributes))
    return [head, *rows_html]


def pipeline_tiles(status: PipelineStatus, now: datetime) -> list[Any]:
    if status.last_committed_at is None:
        last: Any = valued("no batch yet", "")
    else:
        age = (now - status.last_committed_at).total_seconds()
        last = valued(
            f"{status.last_committed_at:%H:%M:%S} ({age:,.0f} s ago)",
            status.last_committed_at.isoformat(),
        )
    rate = "-" if status.last_rows_per_second is None else number(status.last_rows_per_second)
    delay = (
        "-"
        if status.last_delay_seconds is None
        else valued(f"{status.last_delay_seconds:.1f} s", status.last_delay_seconds)
    )
    return [last, rate, delay, number(status.dead_letters)]


def slow_tenants_table(tenants: list[SlowTenant]) -> list[html.Tr]:
    head = html.Tr(
        [html.Th("customer"), html.Th("to events"), html.Th("to the rollups"), html.Th("rows")]
    )
    rows = []
    for t in tenants:
        attributes: dict[str, Any] = {"data-key": t.customer_id}
        delay = valued(f"{t.max_delay_seconds:.1f} s", t.max_delay_seconds)
        rolled = t.max_rollup_delay_seconds
        to_rollups = "-" if rolled is None else valued(f"{rolled:.1f} s", rolled)
        cells = [
            html.Td(t.customer_id),
            html.Td(delay),
            html.Td(to_rollups),
            html.Td(number(t.rows)),
        ]
        rows.append(html.Tr(cells, **attributes))
    return [head, *rows]


def customer_options(snap: Snapshot) -> list[dict[str, str]]:
    options = [{"label": "All customers", "value": ALL_CUSTOMERS}]
    listed = set()
    for customer in snap.top_customers:
        listed.add(customer.key)
        options.append(
            {"label": f"customer {customer.key} ({customer.events:,})", "value": customer.key}
        )
    chosen = snap.view.customer_id
    if chosen is not None and str(chosen) not in listed:
        options.append({"label": f"customer {chosen}", "value": str(chosen)})
    return options


class BadSelection(ValueError):
    """A selector value the page never offers (a crafted request): answered with a message."""


def parse_view(customer: object, range_key: object, schema: str) -> View:
    chosen = RANGES_BY_KEY.get(range_key if isinstance(range_key, str) else "", DEFAULT_RANGE)
    if customer is None or customer in ("", ALL_CUSTOMERS):
        return View(chosen, None, schema)
    # ASCII digits only (str.isdigit takes "²", which int() refuses), within bigint
    if not isinstance(customer, str) or not CUSTOMER_ID.fullmatch(customer):
        raise BadSelection(f"not a customer number: {str(customer)[:40]!r}")
    return View(chosen, int(customer), schema)


OUTPUTS = (
    ("kpi-events", "children"),
    ("kpi-devices", "children"),
    ("kpi-sessions", "children"),
    ("trend", "figure"),
    ("by-country", "figure"),
    ("by-event-type", "figure"),
    ("by-browser-country", "figure"),
    ("top-title", "children"),
    ("top-table", "children"),
    ("pipe-last-batch", "children"),
    ("pipe-rows-per-second", "children"),
    ("pipe-delay", "children"),
    ("pipe-dead-letters", "children"),
    ("freshness", "figure"),
    ("slow-tenants", "children"),
    ("customer", "options"),
    ("updated", "children"),
    ("status", "children"),
)


def render(snap: Snapshot) -> list[Any]:
    """The outputs (in OUTPUTS order) for one snapshot."""
    kpis = snap.kpis
    if snap.top_devices is None:
        top_title = "Busiest customers (choose one to see its top devices)"
        top_rows = ranked_table(("customer", "events"), snap.top_customers[:10])
    else:
        top_title = f"Top devices of customer {snap.view.customer_id}"
        top_rows = ranked_table(("device", "events"), snap.top_devices)
    return [
        number(kpis.events),
        number(kpis.devices),
        number(kpis.sessions),
        trend_figure(snap),
        bar_figure(totals(snap.breakdown, lambda r: label(r.country)), horizontal=True),
        bar_figure(totals(snap.breakdown, lambda r: label(r.event_type))),
        browser_country_figure(snap.breakdown),
        top_title,
        top_rows,
        *pipeline_tiles(snap.pipeline, snap.at),
        freshness_figure(snap.freshness),
        slow_tenants_table(snap.slowest_tenants),
        customer_options(snap),
        valued(f"updated {snap.at:%H:%M:%S} UTC", snap.at.isoformat()),
        "",
    ]


BREAKDOWN_OUTPUTS = (
    ("breakdown-title", "children"),
    ("breakdown-chart", "figure"),
    ("breakdown-table", "children"),
    ("breakdown-status", "children"),
)


def amount(value: Any) -> Any:
    """A measure's cell: counts with thousands separators, sums with two decimals."""
    if value is None:
        return valued("-", "")
    if isinstance(value, int):
        return number(value)
    if isinstance(value, Decimal | float):
        return valued(f"{value:,.2f}", value)
    return valued(str(value), value)


def render_breakdown(
    rollup: DashboardRollup, view: View, dimension: str, rows: list[DimensionValue]
) -> list[Any]:
    """The Breakdown card's outputs (in BREAKDOWN_OUTPUTS order)."""
    if view.customer_id is None:
        who = "all customers"
    elif rollup.tenant is None:
        who = "all customers (its rollup is not by customer)"
    else:
        who = f"customer {view.customer_id}"
    title = (
        f"Top {dimension} values by {rollup.measures[0][1]}, {who} "
        f"({rollup.table}, {rollup.granularity} buckets)"
    )
    head = html.Tr([html.Th(dimension), *(html.Th(header) for _, header, _ in rollup.measures)])
    lines = []
    for row in rows:
        attributes: dict[str, Any] = {"data-key": label(_text(row.value))}
        if row.value is None:
            attributes["data-null"] = "true"
        cells = [html.Td(label(_text(row.value))), *(html.Td(amount(m)) for m in row.measures)]
        lines.append(html.Tr(cells, **attributes))
    chart = bar_figure({label(_text(row.value)): row.measures[0] for row in rows}, horizontal=True)
    chart["data"][0]["name"] = rollup.measures[0][1]
    return [title, chart, [head, *lines], ""]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def remembered(render_one: Callable[[K], list], cache_seconds: float) -> Callable[[K], list]:
    """`render_one(key)`, remembered per key for `cache_seconds` (0: not at all)."""
    if cache_seconds <= 0:
        return render_one
    cache: StaleWhileReloading[K, list] = StaleWhileReloading(
        render_one, cache_seconds, CACHED_VIEWS
    )
    return cache


def rendering(load: Callable[[View], Snapshot], cache_seconds: float) -> Callable[[View], list]:
    """`render(load(view))`, remembered per view for `cache_seconds` (0: not at all)."""
    return remembered(lambda view: render(load(view)), cache_seconds)


def failure_reason(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def create_app(
    load: Callable[[View], Snapshot],
    refresh_seconds: float = 10.0,
    schema: str = "public",
    cache_seconds: float = 0.0,
    rollup: DashboardRollup | None = None,
    load_breakdown: LoadBreakdown | None = None,
) -> Dash:
    """The Dash app; `load` reads one view's snapshot (from the database, in `serve`). With
    `cache_seconds`, a view's rendered panels are reused for that long, then one request reads
    them again while the others get the previous ones (`cache.StaleWhileReloading`): N viewers
    of a view cost one database read and one render per `cache_seconds`, not N.

    With the model's dashboard `rollup`, the Breakdown card too: `load_breakdown` reads its
    rows for a view and a dimension, cached the same way per (view, dimension)."""
    if rollup is not None and load_breakdown is None:
        raise ValueError("a dashboard rollup's card needs load_breakdown to read its rows")
    rendered = rendering(load, cache_seconds)
    app = Dash(
        __name__,
        title="Clickstream, live",
        update_title="",  # the tab's title stays put while panels refresh
        assets_folder=str(Path(__file__).with_name("assets")),
    )
    app.layout = layout(refresh_seconds, rollup)

    @app.callback(
        [Output(element, prop) for element, prop in OUTPUTS],
        Input("refresh", "n_intervals"),
        Input("customer", "value"),
        Input("range", "value"),
    )
    def update(_tick: int | None, customer: object, range_key: object) -> list[Any]:
        try:
            view = parse_view(customer, range_key, schema)
        except BadSelection as exc:
            return [no_update] * (len(OUTPUTS) - 1) + [str(exc)]
        try:
            return rendered(view)
        except (PsycopgError, ConnectionError) as exc:
            reason = failure_reason(exc)
            log.warning("dashboard refresh failed: %s", reason)
            return [no_update] * (len(OUTPUTS) - 1) + [f"database unavailable, retrying: {reason}"]

    if rollup is not None and load_breakdown is not None:
        add_breakdown(app, rollup, load_breakdown, schema, cache_seconds)
    return app


def add_breakdown(
    app: Dash, rollup: DashboardRollup, load: LoadBreakdown, schema: str, cache_seconds: float
) -> None:
    """The Breakdown card's callback: the chosen dimension is part of its cache's key."""

    def render_one(key: tuple[View, str]) -> list:
        view, dimension = key
        return render_breakdown(rollup, view, dimension, load(view, dimension))

    rendered = remembered(render_one, cache_seconds)

    @app.callback(
        [Output(element, prop) for element, prop in BREAKDOWN_OUTPUTS],
        Input("refresh", "n_intervals"),
        Input("customer", "value"),
        Input("range", "value"),
        Input("breakdown-dimension", "value"),
    )
    def update_breakdown(
        _tick: int | None, customer: object, range_key: object, dimension: object
    ) -> list[Any]:
        try:
            view = parse_view(customer, range_key, schema)
        except BadSelection:  # the page's status line says why
            return [no_update] * len(BREAKDOWN_OUTPUTS)
        try:
            return rendered((view, rollup.choose(dimension)))
        except (PsycopgError, ConnectionError) as exc:
            reason = failure_reason(exc)
            log.warning("breakdown refresh failed: %s", reason)
            return [no_update] * (len(BREAKDOWN_OUTPUTS) - 1) + [
                f"breakdown unavailable, retrying: {reason}"
            ]


def require_login(app: Dash, user: str, password: SecretStr) -> None:
    """HTTP basic auth (dash-auth) on every page, asset and callback of `app`."""
    from dash_auth import BasicAuth

    def allowed(given_user: str, given_password: str) -> bool:
        return hmac.compare_digest(given_user.encode(), user.encode()) & hmac.compare_digest(
            given_password.encode(), password.get_secret_value().encode()
        )

    BasicAuth(app, auth_func=allowed)
