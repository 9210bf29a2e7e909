"""Dashboard queries: the lab's named queries on rollups built from N events (default 10M),
p50 and p99 over 50 runs, against the same question answered from raw `events` (count and
count(DISTINCT)) as the baseline; and each live-dashboard panel's query
(`clickstream_pipeline.dashboard.panels`) for the default and the longest range, all customers
and one, against a target of p99 <= 50 ms.

The database `bench_dashboard_<N>` is built once (lab-uniform events with `event_time` spread
over the last 2 days, loaded by `INSERT ... SELECT generate_series` in chunks, then one
`five_minutely_aggregation()` and one `hourly_aggregation()`) and reused while it is at most
`--max-age-hours` old, since the queries look back from now(); `--drop` removes it afterwards.
Pending migrations are applied to a reused database and `dashboard_aggregation()` catches up
on events it has not aggregated.

Run: `.venv/bin/python -m benchmarks.dashboard [--events 10000000] [--quick]`.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg2.errors

from benchmarks.common import Ticker
from benchmarks.harness import (
    Cells,
    Scenario,
    Target,
    db_params,
    ms,
    percentile,
    say,
    setup_env,
    verdict,
)
from clickstream_pipeline.dashboard.panels import DEFAULT_RANGE, PANELS, RANGES, View
from clickstream_pipeline.warehouse.database import ConnectionParams, connect, fetch
from clickstream_pipeline.warehouse.migrations import load_migrations, migrate
from clickstream_pipeline.warehouse.queries import load_queries
from devkit.db import bootstrap, create_database, drop_database
from devkit.waits import wait_until

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
PANEL_TARGET_MS = 50
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


def built_at(db: ConnectionParams) -> float | None:
    """When the database's build finished (epoch), or None when it never did."""
    try:
        rows = fetch(db, "SELECT extract(epoch FROM finished_at), events FROM bench_built")
    except Exception:
        return None
    return float(rows[0][0]) if rows else None


def building(params: ConnectionParams, name: str) -> bool:
    """Whether another run is building `name` right now."""
    rows = fetch(
        params,
        """SELECT count(*) FROM pg_stat_activity
           WHERE datname = %s AND application_name = 'bench-dashboard' AND state = 'active'""",
        (name,),
    )
    return bool(rows[0][0])


@contextlib.contextmanager
def ticking(what: str, every_s: float = 15.0) -> Iterator[None]:
    """Progress lines while one long statement runs."""
    started = time.perf_counter()
    ticker = Ticker(lambda: say(f"{what}: {time.perf_counter() - started:.0f}s so far"), every_s)
    ticker.start()
    try:
        yield
    finally:
        ticker.stop()


def build(params: ConnectionParams, name: str, events: int, chunk: int) -> ConnectionParams:
    drop_database(params, name)
    say(f"building {name}: {events:,} events in chunks of {chunk:,}, then the rollups")
    db = create_database(params, name)
    bootstrap(db)
    conn = connect(db, "bench-dashboard")
    conn.autocommit = True
    started = time.perf_counter()
    done = 0
    load_s = rollup_s = 0.0
    try:
        with conn.cursor() as cur:
            while done < events:
                size = min(chunk, events - done)
                t0 = time.perf_counter()
                cur.execute(LOAD_CHUNK, (size,))
                done += size
                load_s += time.perf_counter() - t0
                rate = size / (time.perf_counter() - t0)
                say(f"loaded {done:,}/{events:,} events ({rate:,.0f} rows/s)")
            # one pass each, as the lab's cron jobs do after a bulk load (no merging)
            for function in ("five_minutely_aggregation", "hourly_aggregation"):
                t0 = time.perf_counter()
                with ticking(f"{function}() over {events:,} events"):
                    cur.execute(f"SELECT {function}()")
                rollup_s += time.perf_counter() - t0
                say(f"{function}(): {events / (time.perf_counter() - t0):,.0f} events/s")
            cur.execute("VACUUM ANALYZE events")
            cur.execute("VACUUM ANALYZE rollup_events_5min")
            cur.execute("VACUUM ANALYZE rollup_events_1hr")
            cur.execute(
                "CREATE TABLE bench_built AS SELECT now() AS finished_at, %s::bigint AS events, "
                "%s::float8 AS load_s, %s::float8 AS rollup_s",
                (events, load_s, rollup_s),
            )
    finally:
        conn.close()
    say(f"built {name} in {time.perf_counter() - started:.0f}s")
    return db


def ensure_dashboard_rollups(db: ConnectionParams) -> None:
    """Apply pending migrations (a database built before 0008 lacks the dashboard rollups) and
    run dashboard_aggregation() over events it has not aggregated yet."""
    conn = connect(db, "bench-dashboard")
    try:
        applied = migrate(conn, load_migrations()).applied
        if applied:
            say(f"applied {', '.join(m.filename for m in applied)}")
        conn.autocommit = True
        with conn.cursor() as cur:
            t0 = time.perf_counter()
            with ticking("dashboard_aggregation()"):
                cur.execute("SELECT * FROM dashboard_aggregation()")
            start_id, end_id = cur.fetchone()
            if start_id <= end_id:
                say(
                    f"dashboard_aggregation(): events {start_id:,}..{end_id:,} in "
                    f"{time.perf_counter() - t0:.0f}s"
                )
                for table in DASHBOARD_TABLES:
                    cur.execute(f"VACUUM ANALYZE {table}")
    finally:
        conn.close()


def timed(cur: Any, text: str, runs: int, warm: int, budget_s: float) -> list[float]:
    """Up to `runs` timings in ms (after `warm` untimed runs), stopping once `budget_s` is spent
    (at least one timed run). A run cut by statement_timeout counts as the timeout."""
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


def panel_views() -> list[tuple[str, View]]:
    """The default range and the longest, for all customers and for one (customer 1)."""
    longest = max(RANGES, key=lambda r: r.span)
    return [
        (f"{r.key}/{who}", View(r, customer))
        for r in (DEFAULT_RANGE, longest)
        for who, customer in (("all", None), ("customer", 1))
    ]


def time_panels(cur: Any, runs: int, budget_s: float) -> dict[str, dict[str, float]]:
    """p50/p99 of each dashboard panel's query (as the app runs it) per view, in ms."""
    out = {}
    for panel in PANELS:
        for label, view in panel_views():
            if not panel.applies(view) or (view.customer_id and not panel.by_customer):
                continue
            text = cur.mogrify(*panel.query(view)).decode()
            ms = timed(cur, text, runs, 2, budget_s)
            figures = {"runs": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}
            out[f"{panel.name}/{label}"] = figures
            met = figures["p99_ms"] <= PANEL_TARGET_MS
            say(
                f"panel {panel.name} ({label}): p50 {figures['p50_ms']:.1f} ms, p99 "
                f"{figures['p99_ms']:.1f} ms ({len(ms)} runs): target p99 <= "
                f"{PANEL_TARGET_MS} ms {'met' if met else 'MISSED'}"
            )
    return out


def prepare_database(args: argparse.Namespace) -> ConnectionParams:
    """The `bench_dashboard_<events>` database: reused while young enough, else built."""
    _, secrets = setup_env(args.env)
    params = db_params(secrets)
    name = f"bench_dashboard_{args.events}"
    db = replace(params, dbname=name)
    if building(params, name):
        say(f"{name} is being built by another run: waiting")
        wait_until(lambda: not building(params, name), 3600, f"{name}'s build", every_s=15)
    finished = built_at(db)
    if args.rebuild or finished is None or time.time() - finished > args.max_age_hours * 3600:
        db = build(params, name, args.events, args.chunk)
    else:
        say(f"reusing {name} (built {(time.time() - finished) / 60:.0f} min ago)")
    ensure_dashboard_rollups(db)
    return db


def run(args: argparse.Namespace) -> dict[str, Any]:
    db = prepare_database(args)
    ((load_s, rollup_s),) = fetch(db, "SELECT load_s, rollup_s FROM bench_built")
    sizes = fetch(
        db,
        """SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM rollup_events_5min),
                  (SELECT count(*) FROM rollup_events_1hr)""",
    )[0]
    results: dict[str, Any] = {
        "events": int(sizes[0]),
        "rollup_5min_rows": int(sizes[1]),
        "rollup_1hr_rows": int(sizes[2]),
        "build_load_rows_per_s": args.events / load_s,
        "build_rollup_events_per_s": args.events / rollup_s,
        "runs": args.runs,
        "raw_runs": args.raw_runs,
        "queries": {},
    }
    conn = connect(db, "bench-dashboard")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT set_config('statement_timeout', %s, false)", (f"{args.timeout_s}s",)
            )
            for query in load_queries().values():
                rollup_ms = timed(cur, query.sql, args.runs, 2, args.budget_s)
                raw_ms = timed(cur, RAW[query.name], args.raw_runs, 0, args.budget_s)
                figures = {
                    "rollup_runs": len(rollup_ms),
                    "raw_runs": len(raw_ms),
                    "rollup_p50_ms": percentile(rollup_ms, 50),
                    "rollup_p99_ms": percentile(rollup_ms, 99),
                    "raw_p50_ms": percentile(raw_ms, 50),
                    "raw_p99_ms": percentile(raw_ms, 99),
                }
                figures["speedup_p50"] = figures["raw_p50_ms"] / figures["rollup_p50_ms"]
                results["queries"][query.name] = figures
                say(f"{query.name}: {figures}")
            results["panels"] = time_panels(cur, args.runs, args.budget_s)
    finally:
        conn.close()
    if args.drop:
        drop_database(db_params(setup_env(args.env)[1]), db.dbname)
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
        Target(f"panel_p99_le_50ms:{panel}", p99, "<=", PANEL_TARGET_MS, "p99 <= 50 ms")
        for panel, p99 in worst.items()
    ]
    return found


def rows(f: dict[str, Any]) -> list[Cells]:
    found = [
        [f"dashboard `{name}` ({f['events']:,} events)",
         f"rollup p50 {ms(q['rollup_p50_ms'])}, p99 {ms(q['rollup_p99_ms'])} "
         f"({q['rollup_runs']} runs)",
         f"raw `events` p50 {ms(q['raw_p50_ms'])} ({q['raw_runs']} runs)",
         f"{q['speedup_p50']:,.1f}x",
         verdict(f, f"rollup_p99_le_20ms:{name}", f"speedup_ge_50x:{name}")]
        for name, q in f["queries"].items()
    ]  # fmt: skip
    cells: dict[str, list[str]] = {}
    for key, p in f["panels"].items():
        panel, view = key.split("/", 1)
        cells.setdefault(panel, []).append(f"{view} {ms(p['p50_ms'])} / {ms(p['p99_ms'])}")
    return found + [
        [f"dashboard panel `{panel}` ({f['events']:,} events; p50 / p99)", "; ".join(texts), "",
         "", verdict(f, f"panel_p99_le_50ms:{panel}")]
        for panel, texts in cells.items()
    ]  # fmt: skip


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--raw-runs", type=int, default=5, help="runs of each raw-events query")
    parser.add_argument("--budget-s", type=float, default=20.0, help="time per query and side")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="statement_timeout")
    parser.add_argument("--max-age-hours", type=float, default=6.0)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--drop", action="store_true", help="drop the database afterwards")


QUICK = {"events": 200_000, "chunk": 100_000, "runs": 20, "raw_runs": 3, "budget_s": 5.0}
SCENARIO = Scenario(
    "dashboard",
    __doc__ or "",
    run,
    quick=QUICK,
    arguments=arguments,
    targets=targets,
    rows=rows,
    on_both=True,
)

if __name__ == "__main__":
    SCENARIO.main()
