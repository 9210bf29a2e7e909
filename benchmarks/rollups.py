"""Rollups after a batch: the three rollup functions (the lab's five_minutely_aggregation() and
hourly_aggregation(), the dashboard's dashboard_aggregation()) over N new events, on the plain
PostgreSQL server and on the Citus cluster in the same run, each in a scratch database of its
own. The plain server is the baseline: the figure that matters is seconds per event on Citus
over seconds per event on PostgreSQL (goal: at most 1), and the Citus total for 200,000 events
(goal: at most 2 s). Database CPU is counted on every server (coordinator and workers).

Events are lab-uniform with `event_time` spread over the last 5 minutes (a micro-batch's
worth of a busy stream), loaded by `INSERT ... SELECT generate_series` before the clock starts.

Run: `.venv/bin/python -m benchmarks.rollups [--events 200000,2000000] [--quick]`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.common import DbCpuMeter
from benchmarks.dashboard import LOAD_CHUNK
from benchmarks.harness import (
    Cells,
    Scenario,
    Target,
    db_params,
    n0,
    say,
    scratch_database,
    servers,
    setup_env,
)
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.db import execute

FUNCTIONS = ("five_minutely_aggregation", "hourly_aggregation", "dashboard_aggregation")
LOAD = LOAD_CHUNK.replace("interval '2 days'", "interval '5 minutes'")


def measure(db: ConnectionParams, events: int) -> dict[str, Any]:
    """Load `events` new events, then time each rollup function over them."""
    execute(db, LOAD % events)
    seconds: dict[str, float] = {}
    with DbCpuMeter(db) as meter:
        for function in FUNCTIONS:
            t0 = time.perf_counter()
            execute(db, f"SELECT {function}()")
            seconds[function] = time.perf_counter() - t0
            say(f"{db.dbname}: {function}() {seconds[function]:.2f}s")
    total = sum(seconds.values())
    return {
        "events": events,
        "seconds": seconds,
        "total_s": total,
        "events_per_s": events / total,
        "us_per_event": total / events * 1e6,
        "db_cpu_s": meter.reading.own_s,
        "db_cpu_us_per_event": meter.reading.own_s / events * 1e6,
        "servers": sorted(meter.servers),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(n) for n in str(args.events).split(",")]
    runs: dict[str, dict[str, Any]] = {}
    for server, env in servers().items():
        _, secrets = setup_env(env)
        for size in sizes:
            with scratch_database(db_params(secrets), f"bench_rollups_{server}") as db:
                runs[f"{server}_{size}"] = {"server": server, **measure(db, size)}
    ratios = {
        f"citus_over_postgres_s_per_event_{size}": runs[f"citus_{size}"]["us_per_event"]
        / runs[f"postgres_{size}"]["us_per_event"]
        for size in sizes
        if f"citus_{size}" in runs
    }
    return {"sizes": sizes, "runs": runs, "ratios": ratios}


def targets(f: dict[str, Any]) -> list[Target]:
    found = []
    if f["ratios"]:
        worst = max(f["ratios"].values())
        found.append(Target("citus_per_event_le_postgres", worst, "<=", 1.0, "<= 1x"))
    if "citus_200000" in f["runs"]:
        total = f["runs"]["citus_200000"]["total_s"]
        found.append(Target("citus_200k_within_2s", total, "<=", 2.0, "<= 2 s"))
    return found


def rows(f: dict[str, Any]) -> list[Cells]:
    found = []
    for run in f["runs"].values():
        s = run["seconds"]
        ratio = f["ratios"].get(f"citus_over_postgres_s_per_event_{run['events']}")
        shown = f"{ratio:.2f}x" if ratio is not None and run["server"] == "citus" else ""
        found.append(
            [run["server"], f"{run['events']:,}"]
            + [f"{s[name]:.2f}" for name in FUNCTIONS]
            + [f"{run['total_s']:.2f}", n0(run["events_per_s"])]
            + [f"{run['db_cpu_us_per_event']:.1f}", shown]
        )
    for name, t in f["targets"].items():
        found.append([f"target `{name}`", "met" if t["met"] else "missed", *[""] * 7])
    return found


SCENARIO = Scenario(
    "rollups",
    __doc__ or "",
    run,
    quick={"events": "20000"},
    arguments=lambda p: p.add_argument("--events", default="200000,2000000", help="sizes"),
    targets=targets,
    rows=rows,
    title="Rollups after a batch, both servers in one run",
    columns=(
        "server",
        "new events",
        "5-minute s",
        "hourly s",
        "dashboard s",
        "total s",
        "events/s",
        "DB CPU us/event",
        "Citus / PostgreSQL s per event",
    ),
)

if __name__ == "__main__":
    SCENARIO.main()
