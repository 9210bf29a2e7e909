"""Raw events' retention on Citus: pg_partman's maintenance (what the bootstrap configures,
`part_config.retention`) against Citus's own `drop_old_time_partitions`, dropping the same
old daily partitions of `events` (distributed, 32 shards each) holding the same rows,
alternately, R rounds each (docs/how-to/retention.md)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.harness import Scenario, say, scratch_db, servers
from devkit.db import execute, query

PARTITIONS = """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'public.events'::regclass ORDER BY 1"""
# the old days: Citus creates the daily partitions partman's premake did not (same bounds)
OLD_DAYS = (
    "SELECT create_time_partitions('public.events', '1 day', now(), now() - interval '{days} days')"
)
FILL = """INSERT INTO events (event_time, customer_id, event_type, country, browser, device_id,
                              session_id)
          SELECT date_trunc('day', now()) - interval '{day} days'
                     + (i % 86000) * interval '1 second',
                 1 + i % 50, 'view', 'NL', 'firefox', i % 5000, i
          FROM generate_series(1, {rows}) AS i"""
OLD_ROWS = "SELECT count(*) FROM events WHERE event_time < now() - interval '{days} days'"
DESIGNS = {
    "partman": (
        "UPDATE partman.part_config SET retention = '{keep} days', retention_keep_table = false "
        "WHERE parent_table = 'public.events'",
        "SELECT partman.run_maintenance('public.events')",
    ),
    "citus": ("CALL drop_old_time_partitions('public.events', now() - interval '{keep} days')",),
}


def one_round(db: Any, design: str, args: argparse.Namespace) -> dict[str, Any]:
    execute(db, "UPDATE partman.part_config SET retention = NULL")
    query(db, OLD_DAYS.format(days=args.days))
    for day in range(args.keep_days + 1, args.days):
        execute(db, FILL.format(day=day, rows=args.rows_per_day))
    before = query(db, PARTITIONS)
    ((old_rows,),) = query(db, OLD_ROWS.format(days=args.keep_days))
    started = time.perf_counter()
    execute(db, *(s.format(keep=args.keep_days) for s in DESIGNS[design]))
    seconds = time.perf_counter() - started
    after = query(db, PARTITIONS)
    ((left,),) = query(db, OLD_ROWS.format(days=args.keep_days + 1))
    dropped = sorted(name for (name,) in set(before) - set(after))  # partman may add some too
    say(f"{design}: dropped {len(dropped)} partitions ({old_rows:,} old rows) in {seconds:.2f}s")
    return {
        "seconds": seconds,
        "dropped": len(dropped),
        "old_rows": old_rows,
        "rows_left_past_horizon": left,
        "dropped_partitions": dropped,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if "citus" not in servers():
        raise SystemExit("a Citus cluster is needed (make up)")
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in DESIGNS}
    with scratch_db(servers()["citus"][1], "retention", models=("lab",)) as db:
        for _ in range(args.rounds):
            for design in DESIGNS:
                rounds[design].append(one_round(db, design, args))
    best = {name: min(r["seconds"] for r in runs) for name, runs in rounds.items()}
    same = all(
        a["dropped_partitions"] == b["dropped_partitions"]
        for a, b in zip(rounds["partman"], rounds["citus"], strict=True)
    )
    return {
        "days": args.days,
        "keep_days": args.keep_days,
        "rows_per_day": args.rows_per_day,
        "rounds": rounds,
        "best_s": best,
        "citus_over_partman": best["citus"] / best["partman"],
        "same_partitions_dropped": same,
    }


SCENARIO = Scenario(
    "citus_retention",
    __doc__ or "",
    run,
    flags={"days": 40, "keep_days": 10, "rows_per_day": 20_000, "rounds": 3},
    quick={"days": 8, "keep_days": 3, "rows_per_day": 1_000, "rounds": 1},
    rows=lambda f: [
        [
            design,
            str(f["rounds"][design][0]["dropped"]),
            f"{f['rounds'][design][0]['old_rows']:,}",
            f"{f['best_s'][design]:.2f}",
            str(f["same_partitions_dropped"]),
        ]
        for design in DESIGNS
    ],
    columns=("design", "partitions dropped", "old rows", "best s", "same partitions dropped"),
    study=True,
)

if __name__ == "__main__":
    SCENARIO.main()
