"""A rollup added to the event model on a live database: the bootstrap generates it, backfills
it from the events already kept in bounded windows while events keep arriving, and the
incremental runs take over; every event is counted once, and a rollup the model drops is kept
until the bootstrap is told to drop it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickstream_pipeline.warehouse.rollup_runner import aggregate
from devkit.db import execute, query
from tests.conftest import PROJECT_DIR
from tests.integration.job_database import JobDatabase, job_database, run_bootstrap

TEAM_ROLLUP = """
[rollups.rollup_browsers_1d]
granularity = "1d"
dimensions = ["customer_id", "browser"]
measures.events = "count"
measures.devices = { distinct = "device_id" }
measures.top_devices = { topn = "device_id" }
measures.sessions_total = { sum = "session_id" }
measures.first_device = { min = "device_id" }
measures.last_device = { max = "device_id" }
"""
# Devices 1..20 take 290, 280, ..., 100 events each (customer 1: a skewed set); 6,000 more go
# to 3,000 other devices spread over three customers.
SKEWED = """INSERT INTO events (event_time, customer_id, event_type, country, browser,
                                device_id, session_id)
    SELECT now() - (i % 50) * interval '1 hour', 1, 'view', 'NL',
           (ARRAY['firefox', 'chrome'])[1 + i % 2], d, i
    FROM generate_series(1, 20) AS d, generate_series(1, 300 - 10 * d) AS i"""
SPREAD = """INSERT INTO events (event_time, customer_id, event_type, country, browser,
                                device_id, session_id)
    SELECT now() - (i % 70) * interval '1 hour', 1 + i % 3, 'view', 'DE',
           (ARRAY['firefox', 'chrome', 'safari'])[1 + i % 3], 1000 + i % 3000, 50000 + i
    FROM generate_series({start}, {start} + {n} - 1) AS i"""
EXACT = """SELECT customer_id, browser, date_trunc('day', event_time), count(*),
                  count(DISTINCT device_id), sum(session_id), min(device_id), max(device_id)
           FROM events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
ROLLED = """SELECT customer_id, browser, bucket, events, hll_cardinality(devices),
                   sessions_total, first_device, last_device
            FROM rollup_browsers_1d ORDER BY 1, 2, 3"""


@pytest.fixture(scope="module")
def team_db(tier, tmp_path_factory) -> Iterator[JobDatabase]:
    with job_database(tier.db, tmp_path_factory.mktemp("rollups"), "rollmodel") as db:
        yield db


def team_model(folder: Path) -> str:
    lab = (PROJECT_DIR / "conf" / "models" / "lab.toml").read_text()
    path = folder / "team.toml"
    path.write_text(lab + TEAM_ROLLUP)
    return str(path)


def test_a_rollup_added_to_the_model_is_backfilled_while_events_arrive_then_kept_up(
    tier, team_db, tmp_path
):
    db = team_db.params
    execute(db, SKEWED, SPREAD.format(start=1, n=6000))
    model = team_model(tmp_path)

    arriving = threading.Event()
    added = [0]

    def keep_writing() -> None:  # events arrive while the bootstrap backfills
        while not arriving.is_set():
            execute(db, SPREAD.format(start=10_000 + added[0], n=200))
            added[0] += 200

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        done = run_bootstrap(tier.env, team_db, model, "--backfill-ids", "2000")
    finally:
        arriving.set()
        writer.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert "rollups new: rollup_browsers_1d" in done.stdout
    assert "rollups unchanged: 8" in done.stdout
    assert added[0] > 0  # events did arrive during the backfill
    backfill_lines = [line for line in done.stdout.splitlines() if "backfill " in line]
    assert len(backfill_lines) >= 6 and "ids/s" in backfill_lines[-1]  # 11,100+ ids in 2,000s

    # registered and run by the ingest job's runner (and pg_cron where it is installed)
    ((function, bounded),) = query(
        db, "SELECT function_name, max_window_ids FROM rollups WHERE name = 'rollup_browsers_1d'"
    )
    assert (function, bounded) == ("rollup_browsers_1d_aggregation", None)
    execute(db, SPREAD.format(start=90_000, n=500))
    aggregate(db.psycopg_kwargs("test", 10))

    exact, rolled = query(db, EXACT), query(db, ROLLED)
    assert [r[:4] for r in rolled] == [r[:4] for r in exact]  # every event counted once
    assert [r[5:] for r in rolled] == [r[5:] for r in exact]  # sum, min, max exact
    for (*_, distinct, _, _, _), (*_, estimate, _, _, _) in zip(exact, rolled, strict=True):
        assert abs(estimate - distinct) <= max(2, 0.03 * distinct)  # HLL 2^14: 0.8% error

    top = query(
        db,
        "SELECT item::bigint FROM topn((SELECT topn_union_agg(top_devices) "
        "FROM rollup_browsers_1d WHERE customer_id = 1), 10)",
    )
    assert [d for (d,) in top] == list(range(1, 11))  # the skewed set's exact top 10
    lab_top = query(  # the lab's query, over the lab's rollup the same runs filled
        db,
        "SELECT item::bigint FROM topn((SELECT topn_union_agg(top_devices_1000) "
        "FROM rollup_events_5min WHERE customer_id = 1), 10)",
    )
    assert [d for (d,) in lab_top] == list(range(1, 11))

    ((view_rows, view_events),) = query(
        db, "SELECT count(*), sum(events) FROM bi_rollup_browsers_1d"
    )
    assert (view_rows, view_events) == (len(exact), sum(r[3] for r in exact))


def pair(*names: str) -> str:
    """Rollups that share one function and window."""
    return "".join(
        f'[rollups.{name}]\ngranularity = "1h"\ndimensions = ["customer_id"]\n'
        'function = "pair_aggregation"\nwindow = "pair"\nmeasures.events = "count"\n'
        for name in names
    )


def test_a_rollup_the_model_drops_is_kept_until_the_bootstrap_is_told(tier, team_db, tmp_path):
    db = team_db.params
    lab = (PROJECT_DIR / "conf" / "models" / "lab.toml").read_text()
    team, kept_pair = tmp_path / "team.toml", tmp_path / "pair.toml"
    team.write_text(lab + TEAM_ROLLUP + pair("rollup_pair_a", "rollup_pair_b"))
    kept_pair.write_text(lab + pair("rollup_pair_a"))
    first = run_bootstrap(tier.env, team_db, str(team))
    assert first.returncode == 0, first.stderr

    kept = run_bootstrap(tier.env, team_db, str(kept_pair))
    assert kept.returncode == 0, kept.stderr
    assert (
        "rollups kept (no longer in the model): rollup_browsers_1d, rollup_pair_b; "
        "--drop-removed-rollups drops them"
    ) in kept.stdout
    assert query(db, "SELECT to_regclass('rollup_browsers_1d') IS NOT NULL") == [(True,)]

    dropped = run_bootstrap(tier.env, team_db, str(kept_pair), "--drop-removed-rollups")
    assert dropped.returncode == 0, dropped.stderr
    assert (
        "rollups dropped (no longer in the model): rollup_browsers_1d, rollup_pair_b"
        in dropped.stdout
    )
    assert query(
        db,
        "SELECT to_regclass('rollup_browsers_1d'), to_regclass('bi_rollup_browsers_1d'), "
        "to_regclass('rollup_pair_b'), to_regprocedure('rollup_browsers_1d_aggregation()'), "
        "(SELECT count(*) FROM rollups WHERE name = 'rollup_browsers_1d'), "
        "(SELECT count(*) FROM clickstream_retention WHERE table_name = 'rollup_browsers_1d')",
    ) == [(None, None, None, None, 0, 0)]
    # the function the dropped rollup shared is generated again, and goes on filling the rest
    execute(db, SPREAD.format(start=200_000, n=100))
    aggregate(db.psycopg_kwargs("test", 10))
    assert query(db, "SELECT sum(events) FROM rollup_pair_a") == query(
        db, "SELECT count(*) FROM events"
    )
    assert query(db, "SELECT count(*) FROM clickstream_rollup_tables") == [(9,)]


DAILY_FROM_HOURLY = """
[rollups.rollup_events_1d]
granularity = "1d"
source = "rollup_events_1hr"
dimensions = ["customer_id", "event_type"]
measures.events = "count"
measures.devices = { distinct = "device_id" }
measures.top_devices = { topn = "device_id" }
"""
# the daily rollup as SQL over its source
FROM_HOURLY = """SELECT customer_id, event_type, date_trunc('day', hour), sum(event_count)::bigint,
                        hll_cardinality(hll_union_agg(device_distinct_count))
                 FROM rollup_events_1hr GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
DAILY = """SELECT customer_id, event_type, bucket, events, hll_cardinality(devices)
           FROM rollup_events_1d ORDER BY 1, 2, 3"""
TOP_DEVICES = """SELECT item::bigint FROM topn((SELECT topn_union_agg({column}) FROM {table}
                 WHERE customer_id = 1), 10)"""


def test_a_rollup_of_a_rollup_is_backfilled_from_it_and_follows_it(tier, team_db, tmp_path):
    db = team_db.params
    execute(db, SKEWED, SPREAD.format(start=300_000, n=3000))
    aggregate(db.psycopg_kwargs("test", 10))
    # raw events older than a day expire; the hourly rollup keeps them
    execute(db, "DELETE FROM events WHERE event_time < now() - interval '1 day'")
    execute(db, SPREAD.format(start=400_000, n=300))  # not yet in the hourly rollup
    lab = (PROJECT_DIR / "conf" / "models" / "lab.toml").read_text()
    model = tmp_path / "daily.toml"
    model.write_text(lab + DAILY_FROM_HOURLY)

    done = run_bootstrap(tier.env, team_db, str(model))
    assert done.returncode == 0, done.stderr
    assert "rollups new: rollup_events_1d" in done.stdout
    assert "backfill rollup_events_1d: every bucket of its source" in done.stdout
    # every hour of the source, the expired raw events' too; none of the 300 it lacks
    assert query(db, DAILY) == query(db, FROM_HOURLY)
    days = query(db, "SELECT count(DISTINCT date_trunc('day', hour)) FROM rollup_events_1hr")
    assert days[0][0] >= 3

    # new and late events: the runs recompute the days they touch, the source's run first
    execute(db, SPREAD.format(start=500_000, n=400))
    ((_, end_id),) = query(db, "SELECT * FROM rollup_events_1d_aggregation()")
    ((source_end,),) = query(
        db, "SELECT last_aggregated_id FROM rollups WHERE name = 'rollup_events_1hr'"
    )
    assert end_id == source_end  # never past what its source has aggregated
    aggregate(db.psycopg_kwargs("test", 10))
    daily = query(db, DAILY)
    assert daily == query(db, FROM_HOURLY)
    ((total,),) = query(db, "SELECT sum(event_count) FROM rollup_events_1hr")
    assert sum(row[3] for row in daily) == total
    top = [
        query(db, TOP_DEVICES.format(column=c, table=t))
        for c, t in (("top_devices", "rollup_events_1d"), ("top_devices_1000", "rollup_events_1hr"))
    ]
    assert top[0] == top[1] and len(top[0]) == 10
