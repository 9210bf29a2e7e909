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
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DbCpuMeter,
    db_params,
    machine_facts,
    say,
    scratch_database,
    setup_env,
    write_result,
)
from benchmarks.dashboard import LOAD_CHUNK
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.db import CITUS_UNAVAILABLE, execute

FUNCTIONS = ("five_minutely_aggregation", "hourly_aggregation", "dashboard_aggregation")
SERVERS = {"postgres": "local", "citus": "local-citus"}
LOAD = LOAD_CHUNK.replace("interval '2 days'", "interval '5 minutes'")


def measure(db: ConnectionParams, events: int) -> dict[str, Any]:
    """Load `events` new events, then time each rollup function over them."""
    started = time.perf_counter()
    execute(db, LOAD % events)
    say(f"{db.dbname}: loaded {events:,} events in {time.perf_counter() - started:.1f}s")
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="200000,2000000", help="comma-separated sizes")
    parser.add_argument("--quick", action="store_true", help="20,000 events")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = [20_000] if args.quick else [int(n) for n in args.events.split(",")]
    servers = dict(SERVERS)
    if CITUS_UNAVAILABLE.is_file():
        say(f"no Citus cluster ({CITUS_UNAVAILABLE.read_text().strip()}): plain PostgreSQL only")
        del servers["citus"]
    runs: dict[str, dict[str, Any]] = {}
    for server, env in servers.items():
        _, secrets = setup_env(env)
        for size in sizes:
            with scratch_database(db_params(secrets), f"bench_rollups_{server}") as db:
                runs[f"{server}_{size}"] = {"server": server, **measure(db, size)}

    results: dict[str, Any] = {"machine": machine_facts(), "sizes": sizes, "runs": runs}
    print()
    print(f"{'server':<10}{'events':>11}{'5-minute':>10}{'hourly':>9}{'dashboard':>11}"
          f"{'total s':>9}{'events/s':>11}{'db CPU us/event':>17}")  # fmt: skip
    for run in runs.values():
        s = run["seconds"]
        print(
            f"{run['server']:<10}{run['events']:>11,}{s['five_minutely_aggregation']:>10.2f}"
            f"{s['hourly_aggregation']:>9.2f}{s['dashboard_aggregation']:>11.2f}"
            f"{run['total_s']:>9.2f}{run['events_per_s']:>11,.0f}{run['db_cpu_us_per_event']:>17.1f}"
        )
    if "citus" in servers:
        ratios = {
            f"citus_over_postgres_s_per_event_{size}": runs[f"citus_{size}"]["us_per_event"]
            / runs[f"postgres_{size}"]["us_per_event"]
            for size in sizes
        }
        results["ratios"] = ratios
        for key, value in ratios.items():
            print(f"ratio {key}: {value:.2f}")
        results["targets"] = {
            "citus_per_event_le_postgres": all(v <= 1.0 for v in ratios.values()),
            **(
                {"citus_200k_within_2s": runs["citus_200000"]["total_s"] <= 2.0}
                if 200_000 in sizes
                else {}
            ),
        }
        for key, met in results["targets"].items():
            print(f"target {key}: {'met' if met else 'NOT met'}")
    write_result("rollups", results, args.out)
    return results


if __name__ == "__main__":
    main()
