"""The bootstrap on a new database: the first run (every migration) and the second (nothing to
do), on plain PostgreSQL and the Citus cluster in the same run, with the partitions and shards
it leaves. Goal: the first on the local 3-node cluster within 15 s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from benchmarks.harness import Cells, Scenario, Target, db_params, say, servers, setup_env, verdict
from clickstream_pipeline.warehouse.database import ConnectionParams, connect, fetch
from clickstream_pipeline.warehouse.migrations import load_migrations, migrate
from devkit.db import scratch_database


def bootstrap_once(params: ConnectionParams, shards: int | None) -> float:
    conn = connect(params)
    try:
        started = time.perf_counter()
        migrate(conn, load_migrations(), shards)
        return time.perf_counter() - started
    finally:
        conn.close()


def measure(main: ConnectionParams, shards: int | None) -> dict[str, Any]:
    with scratch_database(main, "bench_bootstrap") as db:
        first, second = bootstrap_once(db, shards), bootstrap_once(db, shards)
        ((partitions,),) = fetch(
            db, "SELECT count(*) FROM partman.show_partitions('public.events')"
        )
        on_citus = fetch(db, "SELECT to_regclass('pg_dist_shard') IS NOT NULL")[0][0]
        shard_count = fetch(db, "SELECT count(*) FROM pg_dist_shard")[0][0] if on_citus else 0
    return {"first_s": first, "second_s": second, "partitions": partitions, "shards": shard_count}


def run(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for server, env in servers().items():
        cfg, secrets = setup_env(env)
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


def rows(f: dict[str, Any]) -> list[Cells]:
    found = []
    for server, r in f["servers"].items():
        target = verdict(f, "citus_first_bootstrap_within_15s") if server == "citus" else ""
        seconds = [f"{r['first_s_median']:.2f}", f"{r['second_s_median']:.2f}"]
        found.append([server, *seconds, str(r["partitions"]), str(r["shards"]), target])
    return found


def targets(f: dict[str, Any]) -> list[Target]:
    if "citus" not in f["servers"]:
        return []
    first = f["servers"]["citus"]["first_s_median"]
    return [Target("citus_first_bootstrap_within_15s", first, "<=", 15.0, "<= 15 s")]


SCENARIO = Scenario(
    "bootstrap",
    __doc__ or "",
    run,
    flags={"runs": 3},  # databases a server
    quick={"runs": 1},
    targets=targets,
    rows=rows,
    title="Bootstrap of a new database",
    columns=("server", "first run s (median)", "second run s", "partitions", "shards", "target"),
)

if __name__ == "__main__":
    SCENARIO.main()
