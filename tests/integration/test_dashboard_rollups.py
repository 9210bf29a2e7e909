"""The dashboard rollups and BI views (0008) against raw events, and the read-only role."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from importlib import resources

import psycopg2
import pytest

from clickstream_pipeline.core.model import load_model
from clickstream_pipeline.warehouse.database import ConnectionParams, connect
from clickstream_pipeline.warehouse.event_table import bi_view_name
from devkit.db import (
    TEST_MODELS,
    bootstrapped_database,
    copy_events,
    create_login,
    drop_login,
    query,
)
from tests.integration.test_rollups import BUCKET_5MIN, HEAVY, HOUR, close, synthetic_events

DIMENSIONS = ("event_type", "country", "browser")
# table -> (its bucket column, the same bucket computed from events, its key columns)
TABLES = {
    "rollup_customer_totals_5min": ("minute", BUCKET_5MIN, ("customer_id",)),
    "rollup_customer_totals_1hr": ("hour", HOUR, ("customer_id",)),
    "rollup_totals_5min": ("minute", BUCKET_5MIN, ()),
    "rollup_totals_1hr": ("hour", HOUR, ()),
    "rollup_dimensions_5min": ("minute", BUCKET_5MIN, DIMENSIONS),
    "rollup_dimensions_1hr": ("hour", HOUR, DIMENSIONS),
}
BI_VIEWS = (
    "bi_events_5min",
    "bi_events_hourly",
    "bi_customer_5min",
    "bi_customer_hourly",
    "bi_totals_5min",
    "bi_totals_hourly",
    "bi_dimensions_5min",
    "bi_dimensions_hourly",
    "bi_top_devices_hourly",
    "bi_pipeline_batches",
    "bi_raw_events_last_day",
)


def dashboard_aggregation(db: ConnectionParams) -> None:
    query(db, "SELECT dashboard_aggregation()")


def lab_aggregations(db: ConnectionParams) -> None:
    query(db, "SELECT five_minutely_aggregation()")
    query(db, "SELECT hourly_aggregation()")


def assert_counts_equal_events(db: ConnectionParams) -> None:
    """Every dashboard rollup holds exactly the events of each of its keys."""
    for table, (column, bucket, keys) in TABLES.items():
        cols = "".join(f", {k}" for k in keys)
        rolled = query(db, f"SELECT {column}{cols}, sum(event_count) FROM {table} GROUP BY 1{cols}")
        raw = query(db, f"SELECT {bucket} AS b{cols}, count(*) FROM events GROUP BY 1{cols}")
        assert {r[:-1]: r[-1] for r in rolled} == {r[:-1]: r[-1] for r in raw}, table


def regulars(rng: random.Random, n: int, start: datetime, span_s: float) -> list[tuple]:
    """Customer 7's events from 500 devices in 2,000 sessions: far fewer devices than events."""
    return [
        (
            start + timedelta(seconds=rng.uniform(0, span_s)),
            7,
            "click",
            "India",
            "chrome",
            rng.randint(1, 500),
            rng.randint(1, 2_000),
        )
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def loaded(tier):
    """70,000+ events of the last 3 hours; the dashboard rollups run before the lab's."""
    main = tier.db
    with bootstrapped_database(main) as db:
        start = datetime.now(UTC) - timedelta(hours=3)
        rng = random.Random(21)
        copy_events(db, synthetic_events(rng, 60_000, start, 3 * 3600 - 60))
        copy_events(db, regulars(rng, 10_000, start, 3 * 3600 - 60))
        dashboard_aggregation(db)
        lab_aggregations(db)
        yield db


def test_counts_equal_events_per_key(loaded):
    assert_counts_equal_events(loaded)
    (hours,) = query(loaded, "SELECT count(*) FROM rollup_totals_1hr")
    assert hours[0] >= 3


@pytest.mark.parametrize(
    ("table", "column", "bucket"),
    [("rollup_totals_5min", "minute", BUCKET_5MIN), ("rollup_totals_1hr", "hour", HOUR)],
    ids=["5min", "1hr"],
)
def test_distinct_devices_and_sessions_within_three_percent(loaded, table, column, bucket):
    rolled = query(
        loaded,
        f"""SELECT {column}, hll_cardinality(device_distinct_count),
                   hll_cardinality(session_distinct_count) FROM {table}""",
    )
    raw = dict(
        (r[0], r[1:])
        for r in query(
            loaded,
            f"""SELECT {bucket}, count(DISTINCT device_id), count(DISTINCT session_id)
                FROM events GROUP BY 1""",
        )
    )
    assert max(devices for devices, _ in raw.values()) >= 1_000
    for when, devices, sessions in rolled:
        assert close(devices, raw[when][0]) and close(sessions, raw[when][1]), when


def test_customer_totals_hold_the_exact_top_devices(loaded):
    (row,) = query(
        loaded,
        """SELECT array_agg(item ORDER BY frequency DESC, item) FROM topn(
               (SELECT topn_union_agg(top_devices_1000) FROM rollup_customer_totals_1hr
                WHERE customer_id = 2), 10)""",
    )
    assert [int(item) for item in row[0]] == sorted(HEAVY, key=HEAVY.get, reverse=True)[:10]
    (week,) = query(
        loaded,
        """SELECT hll_cardinality(hll_union_agg(device_distinct_count))
           FROM rollup_customer_totals_1hr WHERE customer_id = 1""",
    )
    (exact,) = query(loaded, "SELECT count(DISTINCT device_id) FROM events WHERE customer_id = 1")
    assert close(week[0], exact[0])


def test_repeated_runs_and_late_events_merge_exactly_once(tier):
    main = tier.db
    with bootstrapped_database(main) as db:
        now = datetime.now(UTC)
        rng = random.Random(8)
        copy_events(db, synthetic_events(rng, 4_000, now - timedelta(minutes=90), 1200))
        dashboard_aggregation(db)
        dashboard_aggregation(db)  # nothing new: nothing changes
        # late events for buckets already aggregated, and some for a new hour
        copy_events(db, synthetic_events(rng, 900, now - timedelta(minutes=80), 600))
        copy_events(db, synthetic_events(rng, 300, now - timedelta(minutes=5), 200))
        dashboard_aggregation(db)
        assert_counts_equal_events(db)
        (total,) = query(db, "SELECT sum(event_count) FROM rollup_totals_5min")
        assert total[0] == 4_000 + 900 + 300 + 3 * sum(HEAVY.values())


def test_concurrent_runs_with_the_lab_rollups_while_loading_do_not_double_count(tier):
    main = tier.db
    with bootstrapped_database(main) as db:
        now = datetime.now(UTC)
        rng = random.Random(13)
        errors: list[BaseException] = []

        def loader() -> None:
            for _ in range(5):
                copy_events(db, synthetic_events(rng, 1_000, now - timedelta(minutes=70), 4000))

        def aggregator(run) -> None:
            try:
                for _ in range(6):
                    run(db)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        runs = (dashboard_aggregation, dashboard_aggregation, lab_aggregations)
        threads = [threading.Thread(target=loader)]
        threads += [threading.Thread(target=aggregator, args=(run,)) for run in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors
        dashboard_aggregation(db)
        assert_counts_equal_events(db)
        (total,) = query(db, "SELECT sum(event_count) FROM rollup_customer_totals_1hr")
        assert total[0] == 5 * (1_000 + sum(HEAVY.values()))


def test_bi_views_are_documented_and_read_the_rollups(loaded):
    comments = dict(
        query(
            loaded,
            """SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c
               WHERE c.relkind = 'v' AND c.relname LIKE 'bi\\_%'""",
        )
    )
    models = {bi_view_name(load_model(m)) for m in TEST_MODELS} - {None}  # the models' own
    rollups = {s.view_name(t) for m in TEST_MODELS for t, s in load_model(m).rollups.items()}
    assert set(comments) == set(BI_VIEWS) | models | rollups  # and the models' rollups' views
    assert all(comments.values())
    raw_readers = {name for name, text in comments.items() if "READS RAW EVENTS" in text}
    assert raw_readers == {"bi_raw_events_last_day"} | models

    (events,) = query(loaded, "SELECT count(*) FROM events")
    for view in ("bi_events_hourly", "bi_customer_5min", "bi_totals_hourly", "bi_dimensions_5min"):
        assert query(loaded, f"SELECT sum(events) FROM {view}") == [events], view
    hourly = query(
        loaded,
        """SELECT t.bucket_start, t.events, t.distinct_devices, count(DISTINCT e.device_id)
           FROM bi_totals_hourly t
           JOIN events e ON date_trunc('hour', e.event_time) = t.bucket_start
           GROUP BY 1, 2, 3""",
    )
    assert all(close(estimate, exact) for _, _, estimate, exact in hourly)
    tops = query(
        loaded,
        """SELECT bucket_start, array_agg(device_id ORDER BY device_rank),
                  array_agg(events ORDER BY device_rank)
           FROM bi_top_devices_hourly WHERE customer_id = 2 GROUP BY 1""",
    )
    for hour, devices, counts in tops:
        exact = dict(
            query(
                loaded,
                f"""SELECT device_id, count(*) FROM events WHERE customer_id = 2 AND {HOUR} = %s
                    GROUP BY device_id""",
                (hour,),
            )
        )
        # the top 3 by count, each with its exact count (TopN orders ties as it likes)
        assert counts[:3] == sorted(exact.values(), reverse=True)[:3], hour
        assert all(exact[d] == c for d, c in zip(devices, counts, strict=True)), hour


def test_the_read_only_role_reads_the_views_and_rollups_and_writes_nothing(loaded):
    text = resources.files("clickstream_pipeline.sql.roles").joinpath("dashboard_readonly.sql")
    role_sql = text.read_text(encoding="utf-8")
    query(loaded, role_sql)
    query(loaded, role_sql)  # safe to run again
    reader = create_login(loaded, "clickstream_dashboard")
    try:
        for view in BI_VIEWS:
            query(reader, f"SELECT * FROM {view} LIMIT 1")
        for table in TABLES:
            query(reader, f"SELECT * FROM {table} LIMIT 1")
        for forbidden in (
            "INSERT INTO rollup_totals_5min (minute, event_count) VALUES (now(), 1)",
            "SELECT * FROM events LIMIT 1",
            "SELECT * FROM clickstream_ingest_ledger LIMIT 1",
            "SELECT dashboard_aggregation()",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                query(reader, forbidden)
    finally:
        drop_login(loaded, reader)


def test_the_read_only_role_cannot_create_objects_where_public_may(tier):
    """PostgreSQL 14 and older grant CREATE on schema public to PUBLIC, which every role
    inherits; the role script takes it away (PostgreSQL 15's default) and keeps it for the
    owner of the pipeline's tables."""
    text = resources.files("clickstream_pipeline.sql.roles").joinpath("dashboard_readonly.sql")
    with bootstrapped_database(tier.db) as db:
        query(db, "GRANT CREATE ON SCHEMA public TO PUBLIC")  # as a PostgreSQL 14 database has it
        query(db, text.read_text(encoding="utf-8"))
        reader = create_login(db, "clickstream_dashboard")
        try:
            conn = connect(reader)
            try:
                with conn.cursor() as cur:
                    # the role's sessions default to read-only; a login can turn that off
                    cur.execute("SET default_transaction_read_only = off")
                    conn.commit()
                    for statement in (
                        "CREATE TABLE public.planted (x int)",
                        "CREATE VIEW public.planted AS SELECT 1",
                        "CREATE FUNCTION public.planted() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                    ):
                        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                            cur.execute(statement)
                        conn.rollback()
            finally:
                conn.close()
        finally:
            drop_login(db, reader)
        ((owner_can_create,),) = query(
            db,
            """SELECT has_schema_privilege(c.relowner, 'public', 'CREATE')
               FROM pg_class c WHERE c.oid = 'public.events'::regclass""",
        )
        assert owner_can_create
