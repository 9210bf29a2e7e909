"""Retention from the event model's `[retention]`: raw events lose whole partitions, rollups
their old buckets and the bookkeeping its old rows beyond the batches a checkpoint can replay;
the rollups still answer for the hours whose raw events are gone."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from clickstream_pipeline.ingest.ledger import committed_ranges
from clickstream_pipeline.warehouse.database import connect
from devkit.db import execute, query
from tests.conftest import PROJECT_DIR
from tests.integration.job_database import JobDatabase, job_database, run_bootstrap

RETENTION = """
[retention]
events = "2h"
rollups = "10d"
rollup = { rollup_events_1hr = "30d" }
bookkeeping = "1d"
"""
BATCHES = 150  # the stream's batches in the bookkeeping, all older than its horizon
KEPT_BATCHES = 100  # the batches a checkpoint can replay (Spark's minBatchesToRetain)
ROLLED_UP = "SELECT coalesce(sum(event_count), 0) FROM {} WHERE {} < now() - interval '2 hours'"
# rows older than the horizon outside the default partition (Citus's tableoid is a shard's)
OLD_IN_PARTITIONS = """SELECT (SELECT count(*) FROM events WHERE event_time < now() - interval '2h')
    - (SELECT count(*) FROM events_default WHERE event_time < now() - interval '2h')"""
PARTITIONS = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"


@pytest.fixture(scope="module")
def kept_db(tier, tmp_path_factory) -> Iterator[JobDatabase]:
    with job_database(tier.db, tmp_path_factory.mktemp("retention"), "retention") as db:
        yield db


def short_retention(folder: Path, retention: str = RETENTION) -> str:
    """The lab's model with late events up to an hour and `retention`."""
    lab = (PROJECT_DIR / "conf" / "models" / "lab.toml").read_text()
    text = lab.split("[retention]")[0].replace('max_past = "2d"', 'max_past = "1h"')
    path = folder / "lab.toml"
    path.write_text(text + retention)
    return str(path)


def add_events(db, hours_ago: float, n: int) -> None:
    execute(
        db,
        f"""INSERT INTO events (event_time, customer_id, event_type, country, browser,
                                device_id, session_id)
            SELECT now() - interval '{hours_ago} hours', 1 + i % 3, 'click', 'NL', 'firefox',
                   i, i FROM generate_series(1, {n}) AS i""",
    )


def add_bookkeeping(db) -> None:
    """A stream's ledger entries and batch records, three days old, and two tenant delays."""
    execute(
        db,
        f"""INSERT INTO clickstream_ingest_ledger (sink, kafka_topic, kafka_partition,
                start_offset, end_offset, batch_id, row_count, committed_at)
            SELECT 'kept', 'clicks', 0, b * 10, b * 10 + 9, b, 10, now() - interval '3 days'
            FROM generate_series(0, {BATCHES - 1}) AS b""",
        f"""INSERT INTO clickstream_ingest_batches (query_name, batch_id, rows_read, rows_written,
                rows_duplicate, rows_dead_lettered, offsets, started_at, committed_at, seconds,
                rows_per_second)
            SELECT 'kept', b, 10, 10, 0, 0, '{{}}', now() - interval '3 days',
                   now() - interval '3 days', 1, 10
            FROM generate_series(0, {BATCHES - 1}) AS b""",
        """INSERT INTO clickstream_ingest_tenant_freshness (query_name, batch_id, customer_id,
                customers, rows_written, max_delay_seconds, min_delay_seconds, committed_at)
            VALUES ('kept', 1, 1, 1, 10, 1, 1, now() - interval '3 days'),
                   ('kept', 2, 1, 1, 10, 1, 1, now())""",
    )


def test_old_partitions_buckets_and_bookkeeping_go_and_the_replay_window_stays(
    tier, kept_db, tmp_path
):
    db = kept_db.params
    model = short_retention(tmp_path)
    # the dry run says what it would set, and sets nothing
    dry = run_bootstrap(tier.env, kept_db, model, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "UPDATE partman.part_config SET retention = '2 hours'" in dry.stdout
    events_keep = "SELECT keep FROM clickstream_retention WHERE table_name = 'events'"
    assert query(db, events_keep) == [(timedelta(days=30),)]  # the lab's, as bootstrapped
    done = run_bootstrap(tier.env, kept_db, model)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "retention of events tables: 2h" in done.stdout
    assert "retention of rollup tables: rollup_customer_totals_1hr 10d" in done.stdout
    assert "rollup_events_1hr 30d" in done.stdout
    assert "retention of bookkeeping tables: 1d" in done.stdout
    assert query(db, events_keep) == [(timedelta(hours=2),)]

    # raw events in a partition older than the horizon (daily partitions on Citus, 5-minute
    # ones on plain PostgreSQL), recent ones, and some 11 days old in the default partition
    add_events(db, 40 if tier.citus else 5, 100)
    add_events(db, 0.1, 50)
    add_events(db, 11 * 24, 7)
    execute(db, "SELECT five_minutely_aggregation()", "SELECT hourly_aggregation()")
    add_bookkeeping(db)
    hourly = ROLLED_UP.format("rollup_events_1hr", "hour")
    five_minutely = ROLLED_UP.format("rollup_events_5min", "minute")
    assert query(db, hourly) == query(db, five_minutely) == [(107,)]
    partitions = query(db, PARTITIONS)[0][0]
    assert query(db, OLD_IN_PARTITIONS) == [(100,)]

    execute(
        db,
        "SELECT partman.run_maintenance('public.events', p_analyze := false)",
        "SELECT count(*) FROM clickstream_apply_retention()",
    )
    # raw events: the old partitions are gone with their rows, the default partition stays
    assert query(db, OLD_IN_PARTITIONS) == [(0,)]
    assert query(db, PARTITIONS)[0][0] < partitions
    assert query(db, "SELECT count(*) FROM events WHERE event_time > now() - interval '1h'") == [
        (50,)
    ]
    assert query(db, "SELECT count(*) FROM events_default") == [(7,)]
    # rollups: the hourly buckets outlive the raw events (30 days); the 5-minute ones lose
    # the bucket 11 days old (10 days)
    assert query(db, hourly) == [(107,)]
    assert query(db, five_minutely) == [(100,)]
    # bookkeeping: the newest batches a checkpoint can replay stay, older ones go
    for table, stream in (
        ("clickstream_ingest_ledger", "sink"),
        ("clickstream_ingest_batches", "query_name"),
    ):
        kept = query(db, f"SELECT min(batch_id), count(*) FROM {table} WHERE {stream} = 'kept'")
        assert kept == [(BATCHES - KEPT_BATCHES, KEPT_BATCHES)], table
    conn = connect(db)
    try:
        with conn.cursor() as cur:  # a replay of the newest batch is still seen as written
            newest = (BATCHES - 1) * 10
            assert committed_ranges(cur, "kept", "clicks", "", 0, newest, newest + 9) == [
                (newest, newest + 9)
            ]
    finally:
        conn.close()
    assert query(db, "SELECT batch_id FROM clickstream_ingest_tenant_freshness") == [(2,)]
    removed = dict(
        query(
            db,
            """SELECT table_name, last_removed FROM clickstream_retention
               WHERE last_run_at IS NOT NULL""",
        )
    )
    assert removed["clickstream_ingest_ledger"] == BATCHES - KEPT_BATCHES
    # the 11-day bucket's rows: one per customer (3)
    assert removed["rollup_events_5min"] == 3 and removed["rollup_events_1hr"] == 0


def test_a_retention_naming_no_rollup_is_refused_and_changes_nothing(tier, kept_db, tmp_path):
    model = short_retention(tmp_path, '[retention]\nrollup = { rollup_per_page = "1d" }\n')
    refused = run_bootstrap(tier.env, kept_db, model)
    assert refused.returncode != 0
    assert "retention.rollup.rollup_per_page: no such rollup table" in refused.stderr
    assert "rollup_events_5min" in refused.stderr  # the known ones are listed


def test_make_status_says_what_each_database_keeps(tier):
    status = subprocess.run(
        [str(PROJECT_DIR / "scripts" / "stack.sh"), "status"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    # the tier's database, bootstrapped with the lab's retention and the example model's (its
    # hourly campaigns kept 90 days, unless a test bootstrapped the lab's model since)
    line = re.search(rf"{tier.name}: retention: (.*)", status.stdout)
    assert line, status.stdout
    assert re.fullmatch(
        r"events 30 days \(\d+ partitions\), rollups 400 days( / 90 days)?, "
        r"bookkeeping 7 days; .+",
        line[1],
    ), line[1]
