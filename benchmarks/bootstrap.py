"""The bootstrap on a new database: the first run (every migration) and the second (nothing to
do), on plain PostgreSQL and the Citus cluster in the same run, with the partitions and shards
it leaves. Goal: the first on the local 3-node cluster within 15 s."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Any

from benchmarks.harness import Scenario, Target, cells, db_params, say, servers
from clickstream_pipeline.warehouse.database import ConnectionParams, connect, fetch
from clickstream_pipeline.warehouse.migrations import load_migrations, migrate
from devkit.db import scratch_database

GOAL = "citus_first_bootstrap_within_15s"
ROW = "{server} | {first_s_median:.2f} | {second_s_median:.2f} | {partitions} | {shards}"
ROW += " | {targets:{goal}}"


def measure(main: ConnectionParams, shards: int | None) -> dict[str, Any]:
    """A new database bootstrapped twice: each run's seconds, the partitions and shards left."""
    with scratch_database(main, "bench_bootstrap") as db:
        seconds = []
        for _ in range(2):
            with contextlib.closing(connect(db)) as conn:
                started = time.perf_counter()
                migrate(conn, load_migrations(), shards)
                seconds.append(time.perf_counter() - started)
        ((partitions,),) = fetch(
            db, "SELECT count(*) FROM partman.show_partitions('public.events')"
        )
        on_citus = fetch(db, "SELECT to_regclass('pg_dist_shard') IS NOT NULL")[0][0]
        shard_count = fetch(db, "SELECT count(*) FROM pg_dist_shard")[0][0] if on_citus else 0
    first, second = seconds
    return {"first_s": first, "second_s": second, "partitions": partitions, "shards": shard_count}


def run(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for server, (cfg, secrets) in servers().items():
        shards = cfg.database.citus_shard_count
        runs = [measure(db_params(secrets), shards) for _ in range(args.runs)]
        say(f"{server}: {runs}")
        found[server] = {
            "first_s_median": statistics.median(r["first_s"] for r in runs),
            "second_s_median": statistics.median(r["second_s"] for r in runs),
            "partitions": runs[-1]["partitions"],
            "shards": runs[-1]["shards"],
            "shard_count_setting": shards,
        }
    figures: dict[str, Any] = {"runs": args.runs, "servers": found}
    if "citus" in found:
        first = found["citus"]["first_s_median"] / found["postgres"]["first_s_median"]
        figures["ratio_citus_over_postgres_first"] = first
    return figures


def targets(f: dict[str, Any]) -> list[Target]:
    if "citus" not in f["servers"]:
        return []
    first = f["servers"]["citus"]["first_s_median"]
    return [Target(GOAL, first, "<=", 15.0, "<= 15 s")]


SCENARIO = Scenario(
    "bootstrap",
    __doc__ or "",
    run,
    flags={"runs": 3},  # databases a server
    quick={"runs": 1},
    targets=targets,
    rows=lambda f: [
        cells(
            r | {"server": server, "targets": f["targets"], "goal": GOAL * (server == "citus")},
            ROW,
            6,
        )
        for server, r in f["servers"].items()
    ],
    title="Bootstrap of a new database",
    columns=("server", "first run s (median)", "second run s", "partitions", "shards", "target"),
)

if __name__ == "__main__":
    SCENARIO.main()
