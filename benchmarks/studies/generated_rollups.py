"""Generated against hand-written rollups: the lab's three rollup functions as the migrations
wrote them (0008, 0010) and as the bootstrap generates them from `lab.toml`, over the same N
new events, alternately, best of R rounds each, on plain PostgreSQL and Citus
(docs/how-to/rollups.md)."""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from benchmarks.dashboard import LOAD_CHUNK
from benchmarks.harness import ROOT, Scenario, say, scratch_db, servers
from clickstream_pipeline.core.model import LAB
from clickstream_pipeline.warehouse.rollups import REGISTERED_FUNCTIONS, function_sql, functions
from devkit.db import execute, query

PUBLIC = "SET search_path TO public"  # the migrations' unqualified names resolve to public
WRITTEN = re.compile(r"CREATE OR REPLACE FUNCTION \w+_aggregation\(.*?\$function\$;", re.S)


def hand_written() -> list[str]:
    """The lab's functions as migrations 0010 (the lab's two) and 0008 (the dashboard's) wrote
    them."""
    folder = ROOT / "sql" / "migrations"
    found = [
        body
        for name in ("0010_rollups_single_event_groups.sql", "0008_dashboard_rollups.sql")
        for body in WRITTEN.findall((folder / name).read_text())
    ]
    assert len(found) == 3, f"expected the lab's 3 functions, found {len(found)}"
    return found


def measure(server: str, args: argparse.Namespace) -> dict[str, Any]:
    designs = {
        "hand_written": hand_written(),
        "generated": [function_sql(f, LAB) for f in functions(LAB)],
    }
    seconds: dict[str, list[float]] = {name: [] for name in designs}
    with scratch_db(servers()[server][1], f"generated_{server}", models=("lab",)) as db:
        execute(db, LOAD_CHUNK.replace("interval '2 days'", "interval '5 minutes'") % args.events)
        calls = [f"SELECT {f}()" for (f,) in query(db, REGISTERED_FUNCTIONS)]
        for _ in range(args.rounds):
            for name, bodies in designs.items():
                execute(db, PUBLIC, *bodies)
                execute(
                    db,
                    f"TRUNCATE {', '.join(LAB.rollups)}",
                    "UPDATE rollups SET last_aggregated_id = 0",
                    "VACUUM ANALYZE events",
                )
                each = []
                for call in calls:
                    started = time.perf_counter()
                    execute(db, PUBLIC, call)
                    each.append(time.perf_counter() - started)
                seconds[name].append(sum(each))
                say(f"{server} {name}: {sum(each):.2f}s ({', '.join(f'{s:.2f}' for s in each)})")
    best = {name: min(s) for name, s in seconds.items()}
    return {"seconds": seconds, "best": best, "ratio": best["generated"] / best["hand_written"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    return {"events": args.events} | {server: measure(server, args) for server in servers()}


SCENARIO = Scenario(
    "generated_rollups",
    __doc__ or "",
    run,
    flags={"events": 200_000, "rounds": 3},
    quick={"events": 20_000, "rounds": 1},
    rows=lambda f: [
        [
            server,
            f"{f['events']:,}",
            f"{f[server]['best']['hand_written']:.2f}",
            f"{f[server]['best']['generated']:.2f}",
            f"{f[server]['ratio']:.3f}",
        ]
        for server in ("postgres", "citus")
        if server in f
    ],
    columns=("server", "new events", "hand-written s", "generated s", "generated / hand-written"),
    study=True,
)

if __name__ == "__main__":
    SCENARIO.main()
