"""TopN's accuracy: the lab's top-10 devices of the busiest customer from the rollups, against
exact counts over the raw events, on flat and Zipf-skewed device ids, on plain PostgreSQL (the
SQL stand-in) and Citus (the TopN extension). Events arrive in batches, each followed by the
rollups, as the ingest job runs them (docs/how-to/rollups.md#topn-accuracy)."""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.harness import Scenario, say, scratch_db, servers
from clickstream_pipeline.warehouse.rollups import REGISTERED_FUNCTIONS
from devkit.db import execute, query

# the device of an event: uniform over the devices, or Zipf-like (s = 1.1, inverse CDF)
DEVICES = {
    "flat": "1 + floor(random() * {d})::bigint",
    "zipf": "least({d}, floor(power(1 - random() * (1 - power({d}::float, -0.1)), -10))::bigint)",
}
LOAD = """INSERT INTO events (event_time, customer_id, event_type, country, browser, device_id,
                              session_id)
    SELECT now() - random() * interval '50 minutes',
           CASE WHEN random() < 0.55 THEN 1 ELSE 2 + (random() * 50)::int END,
           (ARRAY['view', 'click', 'buy'])[1 + (random() * 2)::int],
           (ARRAY['NL', 'DE', 'FR', 'US'])[1 + (random() * 3)::int],
           (ARRAY['firefox', 'chrome', 'safari'])[1 + (random() * 2)::int],
           {device}, (random() * 1e6)::bigint
    FROM generate_series(1, {n})"""
EXACT = """SELECT device_id::text, count(*) FROM events WHERE customer_id = 1
           GROUP BY 1 ORDER BY 2 DESC, 1"""
TOP_10 = """SELECT item FROM topn((SELECT topn_union_agg(top_devices_1000) FROM {}
            WHERE customer_id = 1), 10)"""
TABLES = ("rollup_events_5min", "rollup_events_1hr", "rollup_customer_totals_1hr")


def measure(server: str, args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    secrets = servers()[server][1]
    for shape, device in DEVICES.items():
        with scratch_db(secrets, f"topn_{server}", models=("lab",)) as db:
            functions = [f"SELECT {f}()" for (f,) in query(db, REGISTERED_FUNCTIONS)]
            for _ in range(args.events // args.batch):
                execute(db, LOAD.format(device=device.format(d=args.devices), n=args.batch))
                execute(db, "SET search_path TO public", *functions)
            exact = query(db, EXACT)
            counts = dict(exact)
            for table in TABLES:
                got = [item for (item,) in query(db, TOP_10.format(table))]
                found[f"{shape}_{table}"] = {
                    "agree": len({d for d, _ in exact[:10]} & set(got)),
                    "exact_10th": exact[9][1],
                    "exact_11th": exact[10][1],
                    "topn_min_exact": min(counts.get(d, 0) for d in got),
                }
                say(f"{server} {shape} {table}: {found[f'{shape}_{table}']}")
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    return {server: measure(server, args) for server in servers()}


SCENARIO = Scenario(
    "topn_accuracy",
    __doc__ or "",
    run,
    flags={"events": 200_000, "batch": 20_000, "devices": 20_000},
    quick={"events": 20_000, "batch": 5_000},
    rows=lambda f: [
        [
            f"{server}, {key.replace('_', ' ', 1)}",
            f"{r['agree']}/10",
            f"{r['exact_10th']} / {r['exact_11th']}",
            str(r["topn_min_exact"]),
        ]
        for server, runs in f.items()
        if server in ("postgres", "citus")
        for key, r in runs.items()
    ],
    columns=("server, devices, table", "exact top 10 found", "exact 10th / 11th", "TopN's least"),
    study=True,
)

if __name__ == "__main__":
    SCENARIO.main()
