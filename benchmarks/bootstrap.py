"""The bootstrap on a new database: the first run (every migration) and the second (nothing to
do), on the plain PostgreSQL server and on the Citus cluster in the same run, with the
partitions and shards it leaves. Goal: the first bootstrap on the local 3-node cluster within
15 s (the lab's 5-minute partitions took 64 s there, for 18,848 shards).

Run: `.venv/bin/python -m benchmarks.bootstrap [--runs 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import db_params, machine_facts, say, setup_env, write_result
from clickstream_pipeline.core.config import load_config
from clickstream_pipeline.warehouse.database import ConnectionParams, connect, fetch
from clickstream_pipeline.warehouse.migrations import load_migrations, migrate
from devkit.db import CITUS_UNAVAILABLE, create_database, drop_database

SERVERS = {"postgres": "local", "citus": "local-citus"}


def bootstrap_once(params: ConnectionParams, shards: int | None) -> float:
    conn = connect(params)
    try:
        started = time.perf_counter()
        migrate(conn, load_migrations(), shards)
        return time.perf_counter() - started
    finally:
        conn.close()


def measure(main: ConnectionParams, shards: int | None) -> dict[str, Any]:
    name = f"bench_bootstrap_{uuid.uuid4().hex[:8]}"
    db = create_database(main, name)
    try:
        first = bootstrap_once(db, shards)
        second = bootstrap_once(db, shards)
        (partitions,) = fetch(db, "SELECT count(*) FROM partman.show_partitions('public.events')")
        on_citus = fetch(db, "SELECT to_regclass('pg_dist_shard') IS NOT NULL")[0][0]
        shard_count = fetch(db, "SELECT count(*) FROM pg_dist_shard")[0][0] if on_citus else 0
    finally:
        drop_database(main, name)
    return {
        "first_s": first,
        "second_s": second,
        "partitions": partitions[0],
        "shards": shard_count,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="new databases per server")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    servers = dict(SERVERS)
    if CITUS_UNAVAILABLE.is_file():
        say(f"no Citus cluster ({CITUS_UNAVAILABLE.read_text().strip()}): plain PostgreSQL only")
        del servers["citus"]
    results: dict[str, Any] = {"machine": machine_facts(), "runs": args.runs, "servers": {}}
    for server, env in servers.items():
        _, secrets = setup_env(env)
        shards = load_config(env, environ={}).database.citus_shard_count
        runs = []
        for i in range(args.runs):
            runs.append(measure(db_params(secrets), shards))
            say(f"{server} run {i + 1}: first {runs[-1]['first_s']:.2f}s, "
                f"second {runs[-1]['second_s']:.2f}s")  # fmt: skip
        results["servers"][server] = {
            "first_s_median": statistics.median(r["first_s"] for r in runs),
            "second_s_median": statistics.median(r["second_s"] for r in runs),
            "partitions": runs[-1]["partitions"],
            "shards": runs[-1]["shards"],
            "shard_count_setting": shards,
        }
    print()
    print(f"{'server':<10}{'first s':>9}{'second s':>10}{'partitions':>12}{'shards':>8}")
    for server, r in results["servers"].items():
        print(
            f"{server:<10}{r['first_s_median']:>9.2f}{r['second_s_median']:>10.2f}"
            f"{r['partitions']:>12}{r['shards']:>8}"
        )
    if "citus" in results["servers"]:
        citus, plain = results["servers"]["citus"], results["servers"]["postgres"]
        results["ratio_citus_over_postgres_first"] = (
            citus["first_s_median"] / plain["first_s_median"]
        )
        results["targets"] = {"citus_first_bootstrap_within_15s": citus["first_s_median"] <= 15}
        print(f"ratio citus_over_postgres_first: {results['ratio_citus_over_postgres_first']:.2f}")
        met = results["targets"]["citus_first_bootstrap_within_15s"]
        print(f"target citus_first_bootstrap_within_15s: {'met' if met else 'NOT met'}")
    write_result("bootstrap", results, args.out)
    return results


if __name__ == "__main__":
    main()
