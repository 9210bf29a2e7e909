"""The dashboard's Plotly figures, as plain dicts built from the panels' rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from clickstream_pipeline.dashboard.panels import BreakdownRow, FreshnessPoint, Snapshot

COLORS = {"events": "#2f6fba", "devices": "#e07b24", "sessions": "#3a9a5b"}


def trend_figure(snap: Snapshot) -> dict[str, Any]:
    """Events as bars, distinct devices and sessions as lines, per bucket."""
    x = [p.bucket.isoformat() for p in snap.trend]
    events = {
        "type": "bar",
        "name": "events",
        "x": x,
        "y": [p.events for p in snap.trend],
        "marker": {"color": "#9dbbe0"},
    }
    distinct = {
        "devices": [p.devices for p in snap.trend],
        "sessions": [p.sessions for p in snap.trend],
    }
    lines = [_line(name, x, y, COLORS[name]) for name, y in distinct.items()]
    step = "hourly" if snap.view.range.hourly else "5-minute"
    return {"data": [events, *lines], "layout": _layout(f"{step} buckets (UTC)", legend=True)}


def freshness_figure(points: list[FreshnessPoint]) -> dict[str, Any]:
    """The worst Kafka-to-events and Kafka-to-rollups delay per bucket, as two lines."""
    x = [p.bucket.isoformat() for p in points]
    lines = [
        _line(name, x, y, color)
        for name, y, color in (
            ("to events", [p.max_delay_seconds for p in points], "#b83b3b"),
            ("to the rollups", [p.max_rollup_delay_seconds for p in points], "#3b6fb8"),
        )
    ]
    return {"data": lines, "layout": _layout("batches committed (UTC)", legend=True, height=200)}


def _line(name: str, x: list[Any], y: list[Any], color: str) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": name,
        "x": x,
        "y": y,
        "line": {"color": color},
    }


def _layout(
    x_title: str = "", legend: bool = False, height: int = 260, **extra: Any
) -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 40 if legend else 10, "b": 10},
        "showlegend": legend,
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        "xaxis": {"title": {"text": x_title}, "automargin": True},
        "yaxis": {"automargin": True},
        **extra,
    }


def totals(rows: list[BreakdownRow], key: Callable[[BreakdownRow], str]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        totals[key(row)] += row.events
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def label(value: str | None) -> str:
    return "(none)" if value is None else value


def bar_figure(totals: dict[str, int], horizontal: bool = False) -> dict[str, Any]:
    """Events per label, largest first (top to bottom when horizontal)."""
    labels, values = list(totals), list(totals.values())
    bar: dict[str, Any] = {"type": "bar", "name": "events", "marker": {"color": COLORS["events"]}}
    if horizontal:
        bar.update(orientation="h", x=values, y=labels)
        layout = _layout(yaxis={"autorange": "reversed", "automargin": True})
        return {"data": [bar], "layout": layout}
    bar.update(x=labels, y=values)
    return {"data": [bar], "layout": _layout()}


def browser_country_figure(rows: list[BreakdownRow]) -> dict[str, Any]:
    countries = list(totals(rows, lambda r: label(r.country)))
    cells: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(countries, 0))
    for row in rows:
        cells[label(row.browser)][label(row.country)] += row.events
    return {
        "data": [
            {"type": "bar", "name": browser, "x": countries, "y": list(by_country.values())}
            for browser, by_country in sorted(cells.items())
        ],
        "layout": _layout(barmode="stack", legend=True),
    }
