"""Dashboard queries on rollups of N events (10M): the lab's named queries, p50 and p99, against
the same over raw `events`, and each panel's query (target p99 <= 50 ms), on a database
`bench_dashboard_<N>` built once and reused for 6 hours (the queries look back)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time
from dataclasses import replace
from typing import Any

import psycopg2.errors

from benchmarks.harness import Cells, Scenario, Target, cells, db_params, ms, percentile, say
from clickstream_pipeline.dashboard.panels import DEFAULT_RANGE, PANELS, RANGES, View
from clickstream_pipeline.warehouse.database import ConnectionParams, connect, fetch
from clickstream_pipeline.warehouse.queries import load_queries
from devkit.db import bootstrap, create_database, drop_database, execute

LOAD_CHUNK = """
INSERT INTO events (event_time, customer_id, event_type, country, browser, device_id, session_id)
SELECT now() - random() * interval '2 days',
       1 + floor(random() * 1000)::bigint,
       (ARRAY['click','buy','scroll','download'])[1 + floor(random() * 4)::int],
       (ARRAY['United States','United Kingdom','India','France','Germany','China','China'])
           [1 + floor(random() * 7)::int],
       (ARRAY['chrome','firefox','safari','opera'])[1 + floor(random() * 4)::int],
       1 + floor(random() * 10000)::bigint,
       1 + floor(random() * 100000)::bigint
FROM generate_series(1, %s)
"""

LAST_15 = "event_time >= now() - interval '15 minutes' AND event_time <= now()"
LAST_5 = "event_time >= now() - interval '5 minutes' AND event_time <= now()"
WEEK = "event_time >= date_trunc('day', now()) - interval '7 days' AND event_time <= now()"
TWO_DAYS = "event_time >= date_trunc('day', now()) - interval '2 days' AND event_time <= now()"
TOP_WINDOW = (
    "event_time >= date_trunc('day', now()) - interval '30 minutes' AND event_time <= now()"
)
BUILT = """SELECT load_s, rollup_s, (SELECT count(*) FROM events),
                  (SELECT count(*) FROM rollup_events_5min),
                  (SELECT count(*) FROM rollup_events_1hr)
           FROM bench_built"""
DASHBOARD_TABLES = (
    "rollup_customer_totals_5min",
    "rollup_customer_totals_1hr",
    "rollup_totals_5min",
    "rollup_totals_1hr",
    "rollup_dimensions_5min",
    "rollup_dimensions_1hr",
)
COUNTS = "SELECT count(*), count(DISTINCT device_id) FROM events WHERE "
HOURLY = (
    "SELECT date_trunc('hour', event_time) AS hour, count(*), count(DISTINCT device_id), "
    "count(DISTINCT session_id) FROM events WHERE {} GROUP BY 1"
)

# The same question as each named query, answered from raw events.
RAW = {
    "events_last_15_minutes": COUNTS + LAST_15,
    "events_last_15_minutes_customer": COUNTS + LAST_15 + " AND customer_id = 1",
    "events_last_5_minutes_customer": COUNTS + LAST_5 + " AND customer_id = 1",
    "events_last_week": COUNTS + WEEK,
    "events_last_week_customer": COUNTS + WEEK + " AND customer_id = 1",
    "hourly_trend_2_days": HOURLY.format(TWO_DAYS),
    "hourly_trend_2_days_customer": HOURLY.format(TWO_DAYS + " AND customer_id = 1"),
    "top_devices_30_minutes_customer": (
        f"SELECT device_id FROM events WHERE {TOP_WINDOW} AND customer_id = 2 "  # noqa: S608
        "GROUP BY device_id ORDER BY count(*) DESC LIMIT 10"
    ),
}
QUERY_ROW = (
    "dashboard `{name}` ({events:,} events) | rollup p50 {rollup_p50_ms:ms}, p99"
    " {rollup_p99_ms:ms} ({rollup_runs} runs) | raw `events` p50 {raw_p50_ms:ms} ({raw_runs} runs)"
    " | {speedup_p50:,.1f}x | {targets:rollup_p99_le_20ms:{name}; speedup_ge_50x:{name}}"
)


PANEL_ROW = (
    "dashboard panel `{panel}` ({events:,} events; p50 / p99) | {texts} | | "
    "| {targets:panel_p99_le_50ms:{panel}}"
)


def prepare_database(args: argparse.Namespace, chunk: int = 1_000_000) -> ConnectionParams:
    """`bench_dashboard_<events>`, built unless one at most 6 hours old is there, and caught up."""
    params = db_params(args.secrets)
    db = replace(params, dbname=f"bench_dashboard_{args.events}")
    with contextlib.closing(connect(params, "bench-dashboard")) as lock, lock.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (db.dbname,))
        try:
            ((age,),) = fetch(db, "SELECT extract(epoch FROM now() - finished_at) FROM bench_built")
        except (psycopg2.Error, ConnectionError):  # none, or never finished
            age = None
        if age is None or age > 6 * 3600:
            build(params, db, args.events, min(chunk, args.events))
        else:
            say(f"reusing {db.dbname} (built {age / 60:.0f} min ago)")
        bootstrap(db)  # pending migrations, say the dashboard rollups on an older build
        started = time.perf_counter()
        vacuum = (f"VACUUM ANALYZE {table}" for table in DASHBOARD_TABLES)
        execute(db, "SELECT dashboard_aggregation()", *vacuum)
        say(f"dashboard_aggregation() caught up in {time.perf_counter() - started:.0f}s")
    return db


def build(params: ConnectionParams, db: ConnectionParams, events: int, chunk: int) -> None:
    """The database anew: the events in chunks, then the rollups, timed (`bench_built`)."""
    drop_database(params, db.dbname)
    say(f"building {db.dbname}: {events:,} events in chunks of {chunk:,}, then the rollups")
    bootstrap(create_database(params, db.dbname))
    load_s = rollup_s = 0.0
    for done in range(0, events, chunk):
        started = time.perf_counter()
        execute(db, LOAD_CHUNK % min(chunk, events - done))
        load_s += time.perf_counter() - started
        say(f"loaded {min(done + chunk, events):,}/{events:,} events")
    for function in ("five_minutely_aggregation", "hourly_aggregation"):
        started = time.perf_counter()
        say(f"{function}() over {events:,} events")
        execute(db, f"SELECT {function}()")
        rollup_s += time.perf_counter() - started
    tables = ("events", "rollup_events_5min", "rollup_events_1hr")
    built = f"""CREATE TABLE bench_built AS SELECT now() AS finished_at, {events}::bigint AS events,
                {load_s}::float8 AS load_s, {rollup_s}::float8 AS rollup_s"""
    execute(db, *(f"VACUUM ANALYZE {t}" for t in tables), built)


def timed(cur: Any, text: str, runs: int, warm: int, budget_s: float) -> list[float]:
    """Up to `runs` timings in ms after `warm` untimed ones, within `budget_s` (timeouts count)."""
    started = time.perf_counter()
    out: list[float] = []
    for i in range(warm + runs):
        if out and time.perf_counter() - started > budget_s:
            break
        t0 = time.perf_counter()
        try:
            cur.execute(text)
            cur.fetchall()
        except psycopg2.errors.QueryCanceled:
            out.append((time.perf_counter() - t0) * 1000)
            break
        if i >= warm or time.perf_counter() - started > budget_s:
            out.append((time.perf_counter() - t0) * 1000)
    return out


def time_panels(cur: Any, runs: int, budget_s: float) -> dict[str, dict[str, float]]:
    """p50/p99 ms of each panel's query: default and longest range, all customers and customer 1."""
    out = {}
    longest = max(RANGES, key=lambda r: r.span)
    for panel, r, (who, customer) in itertools.product(
        PANELS, (DEFAULT_RANGE, longest), (("all", None), ("customer", 1))
    ):
        view = View(r, customer)
        if not panel.applies(view) or (customer and not panel.by_customer):
            continue
        times = timed(cur, cur.mogrify(*panel.query(view)).decode(), runs, 2, budget_s)
        p50, p99 = percentile(times, 50), percentile(times, 99)
        out[f"{panel.name}/{r.key}/{who}"] = {"runs": len(times), "p50_ms": p50, "p99_ms": p99}
        say(f"panel {panel.name} ({r.key}/{who}): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    db = prepare_database(args)
    ((load_s, rollup_s, events, fine, hourly),) = fetch(db, BUILT)
    results: dict[str, Any] = {
        "events": int(events),
        "rollup_5min_rows": int(fine),
        "rollup_1hr_rows": int(hourly),
        "build_load_rows_per_s": args.events / load_s,
        "build_rollup_events_per_s": args.events / rollup_s,
        "runs": args.runs,
        "raw_runs": args.raw_runs,
        "queries": {},
    }
    with contextlib.closing(connect(db, "bench-dashboard")) as conn, conn.cursor() as cur:
        conn.autocommit = True
        cur.execute("SET statement_timeout = '120s'")
        for query in load_queries().values():
            rollup_ms = timed(cur, query.sql, args.runs, 2, args.budget_s)
            raw_ms = timed(cur, RAW[query.name], args.raw_runs, 0, args.budget_s)
            figures: dict[str, float] = {"rollup_runs": len(rollup_ms), "raw_runs": len(raw_ms)}
            for side, times in (("rollup", rollup_ms), ("raw", raw_ms)):
                figures[f"{side}_p50_ms"] = percentile(times, 50)
                figures[f"{side}_p99_ms"] = percentile(times, 99)
            figures["speedup_p50"] = figures["raw_p50_ms"] / figures["rollup_p50_ms"]
            results["queries"][query.name] = figures
            say(f"{query.name}: {figures}")
        results["panels"] = time_panels(cur, args.runs, args.budget_s)
    return results


def targets(f: dict[str, Any]) -> list[Target]:
    found = []
    for name, q in f["queries"].items():
        found += [
            Target(f"rollup_p99_le_20ms:{name}", q["rollup_p99_ms"], "<=", 20, "p99 <= 20 ms"),
            Target(f"speedup_ge_50x:{name}", q["speedup_p50"], ">=", 50, ">= 50x"),
        ]
    worst: dict[str, float] = {}
    for key, p in f["panels"].items():
        worst[key.split("/")[0]] = max(worst.get(key.split("/")[0], 0.0), p["p99_ms"])
    found += [
        Target(f"panel_p99_le_50ms:{panel}", p99, "<=", 50, "p99 <= 50 ms")
        for panel, p99 in worst.items()
    ]
    return found


def rows(f: dict[str, Any]) -> list[Cells]:
    shared = {"events": f["events"], "targets": f["targets"]}
    found = [cells(q | shared | {"name": name}, QUERY_ROW) for name, q in f["queries"].items()]
    views: dict[str, list[str]] = {}
    for key, p in f["panels"].items():
        panel, view = key.split("/", 1)
        views.setdefault(panel, []).append(f"{view} {ms(p['p50_ms'])} / {ms(p['p99_ms'])}")
    for panel, texts in views.items():
        found.append(cells(shared | {"panel": panel, "texts": "; ".join(texts)}, PANEL_ROW))
    return found


SCENARIO = Scenario(
    "dashboard",
    __doc__ or "",
    run,
    # --raw-runs: of each raw-events query; --budget-s: time per query and side
    flags={"events": 10_000_000, "runs": 50, "raw_runs": 5, "budget_s": 20.0},
    quick={"events": 200_000, "runs": 20, "raw_runs": 3, "budget_s": 5.0},
    targets=targets,
    rows=rows,
    on_both=True,
)

if __name__ == "__main__":
    SCENARIO.main()
