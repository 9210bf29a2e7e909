"""Rollups after a batch: the lab's 5-minute and hourly aggregations and the dashboard's over N
new events, on plain PostgreSQL (the baseline) and Citus in the same run; goals: Citus at most
PostgreSQL's time per event, and within 2 s for 200,000 events."""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.common import DbCpuMeter
from benchmarks.dashboard import LOAD_CHUNK
from benchmarks.harness import Cells, Scenario, Target, say, scratch_db, servers
from clickstream_pipeline.core.secrets import Secrets
from devkit.db import execute

FUNCTIONS = ("five_minutely_aggregation", "hourly_aggregation", "dashboard_aggregation")
COLUMNS = (
    "server",
    "new events",
    "5-minute s",
    "hourly s",
    "dashboard s",
    "total s",
    "events/s",
    "DB CPU us/event",
    "Citus / PostgreSQL s per event",
)


def measure(server: str, secrets: Secrets, events: int) -> dict[str, Any]:
    """Load `events` new events into a scratch database, then time each rollup function."""
    with scratch_db(secrets, f"bench_rollups_{server}") as db:
        execute(db, LOAD_CHUNK.replace("interval '2 days'", "interval '5 minutes'") % events)
        seconds: dict[str, float] = {}
        with DbCpuMeter(db) as meter:
            for function in FUNCTIONS:
                started = time.perf_counter()
                execute(db, f"SELECT {function}()")
                seconds[function] = time.perf_counter() - started
                say(f"{db.dbname}: {function}() {seconds[function]:.2f}s")
    total, cpu = sum(seconds.values()), meter.reading.own_s
    return {
        "server": server,
        "events": events,
        "seconds": seconds,
        "total_s": total,
        "events_per_s": events / total,
        "us_per_event": total / events * 1e6,
        "db_cpu_s": cpu,
        "db_cpu_us_per_event": cpu / events * 1e6,
        "servers": sorted(meter.servers),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(n) for n in str(args.events).split(",")]
    runs = {
        f"{server}_{size}": measure(server, secrets, size)
        for server, (_, secrets) in servers().items()
        for size in sizes
    }
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
        ratio = f["ratios"].get(f"citus_over_postgres_s_per_event_{run['events']}")
        shown = f"{ratio:.2f}x" if ratio is not None and run["server"] == "citus" else ""
        seconds = [f"{run['seconds'][name]:.2f}" for name in FUNCTIONS]
        figures = [f"{run['total_s']:.2f}", f"{run['events_per_s']:,.0f}"]
        cpu = f"{run['db_cpu_us_per_event']:.1f}"
        found.append([run["server"], f"{run['events']:,}", *seconds, *figures, cpu, shown])
    for name, t in f["targets"].items():
        found.append([f"target `{name}`", "met" if t["met"] else "missed", *[""] * 7])
    return found


SCENARIO = Scenario(
    "rollups",
    __doc__ or "",
    run,
    flags={"events": "200000,2000000"},  # sizes
    quick={"events": "20000"},
    targets=targets,
    rows=rows,
    title="Rollups after a batch, both servers in one run",
    columns=COLUMNS,
)

if __name__ == "__main__":
    SCENARIO.main()
