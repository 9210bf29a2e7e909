"""Rollups, HLL, TopN (or its SQL stand-in) and the lab's dashboard queries on real PostgreSQL."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from clickstream_pipeline.warehouse.database import ConnectionParams, connect
from clickstream_pipeline.warehouse.queries import load_queries
from devkit.db import bootstrapped_database, copy_events, query

EVENT_TYPES = ("click", "buy", "scroll", "download")
COUNTRIES = ("United States", "United Kingdom", "India", "France", "Germany", "China")
BROWSERS = ("chrome", "firefox", "safari", "opera")
# Customer 2's heavy hitters: device -> events, clearly ordered (the lab's top-devices query).
HEAVY = {900_000 + k: 640 - 40 * k for k in range(1, 13)}
# the lab's 5-minute bucket, as a timestamptz like the rollup's `minute` column
BUCKET_5MIN = (
    "(date_trunc('seconds', (event_time - TIMESTAMP 'epoch') / 300) * 300"
    " + TIMESTAMP 'epoch')::timestamptz"
)


def synthetic_events(rng: random.Random, n: int, start: datetime, span_s: float) -> list[tuple]:
    rows = []
    for _ in range(n):
        draw = rng.random()
        customer = 1 if draw < 0.3 else 2 if draw < 0.6 else rng.randint(3, 100)
        rows.append(
            (
                start + timedelta(seconds=rng.uniform(0, span_s)),
                customer,
                rng.choice(EVENT_TYPES),
                rng.choice(COUNTRIES),
                rng.choice(BROWSERS),
                rng.randint(1, 200_000),
                rng.randint(1, 1_000_000),
            )
        )
    for device, count in HEAVY.items():
        for _ in range(count):
            rows.append(
                (
                    start + timedelta(seconds=rng.uniform(0, span_s)),
                    2,
                    rng.choice(EVENT_TYPES),
                    rng.choice(COUNTRIES),
                    rng.choice(BROWSERS),
                    device,
                    rng.randint(1, 1_000_000),
                )
            )
    rng.shuffle(rows)
    return rows


def aggregate(db: ConnectionParams) -> None:
    query(db, "SELECT five_minutely_aggregation()")
    query(db, "SELECT hourly_aggregation()")


@pytest.fixture(scope="module")
def loaded(tier):
    """A bootstrapped scratch database with 60,000+ events of the last 14 minutes, rolled up."""
    main = tier.db
    with bootstrapped_database(main) as db:
        now = datetime.now(UTC)
        start = now - timedelta(minutes=14)
        copy_events(db, synthetic_events(random.Random(11), 60_000, start, 830))
        aggregate(db)
        yield db


def in_one_transaction(db: ConnectionParams, *statements: str) -> list[list[tuple]]:
    """Run statements in one transaction, so now() is the same instant for all of them."""
    conn = connect(db)
    try:
        with conn, conn.cursor() as cur:
            results = []
            for statement in statements:
                cur.execute(statement)
                results.append(cur.fetchall())
            return results
    finally:
        conn.close()


REGISTERS = 2**14  # hll_add_agg(..., 14) in the rollups


def close(estimate: float, exact: int, tolerance: float = 0.03) -> bool:
    # postgresql-hll's estimator is the original HyperLogLog's: linear counting while the
    # estimate is under 5/2 of the registers (40,960 here), the raw estimate above, which runs
    # high just past that switch (measured on this server, 5 sets each: at most +1.6% at
    # 39,000 distinct ids, +2.9 to +3.8% at 40,000-41,000, under +2.5% from 47,000); an
    # hourly bucket of the test data can land there
    if 2.4 * REGISTERS <= exact <= 4 * REGISTERS:
        tolerance = max(tolerance, 0.05)
    return abs(estimate - exact) <= tolerance * exact


LAST_15_MIN = f"{BUCKET_5MIN} >= now() - interval '15 minutes' AND {BUCKET_5MIN} <= now()"
LAST_5_MIN = f"{BUCKET_5MIN} >= now() - interval '5 minutes' AND {BUCKET_5MIN} <= now()"
HOUR = "date_trunc('hour', event_time)"
LAST_WEEK = f"{HOUR} >= date_trunc('day', now()) - interval '7 days' AND {HOUR} <= now()"
LAST_2_DAYS = f"{HOUR} >= date_trunc('day', now()) - interval '2 days' AND {HOUR} <= now()"

# lab query -> the same question asked of raw events (count, exact distinct devices)
TOTALS = {
    "events_last_15_minutes": LAST_15_MIN,
    "events_last_15_minutes_customer": f"{LAST_15_MIN} AND customer_id = 1",
    "events_last_5_minutes_customer": f"{LAST_5_MIN} AND customer_id = 1",
    "events_last_week": LAST_WEEK,
    "events_last_week_customer": f"{LAST_WEEK} AND customer_id = 1",
}


def top_up_the_last_minutes(db: ConnectionParams) -> None:
    """200 events of customer 1 from this second, rolled up. The lab's 5-minute queries keep
    buckets that start at most 5 minutes ago (`minute >= now() - interval '5 minutes'`), which
    is only the current one: on a long run the module's events have left it, and so has an
    event from before the bucket began. So the events go in the current bucket, and when it
    ends within 15 s (the roll-up and the test's query), in the next one."""
    left_s = 300 - datetime.now(UTC).timestamp() % 300
    if left_s < 15:
        time.sleep(left_s + 0.1)
    now = datetime.now(UTC)
    rows = [(now, 1, "click", "France", "chrome", 300_000 + i, 2_000_000 + i) for i in range(200)]
    copy_events(db, rows)
    aggregate(db)


@pytest.mark.parametrize("name", sorted(TOTALS))
def test_total_queries_match_raw_events(loaded, name):
    if "5_minutes" in name:
        top_up_the_last_minutes(loaded)
    lab = load_queries()[name]
    (result,), (raw,) = in_one_transaction(
        loaded,
        lab.sql,
        f"SELECT count(*), count(DISTINCT device_id) FROM events WHERE {TOTALS[name]}",
    )
    num_events, distinct_devices = result
    exact_count, exact_devices = raw
    assert exact_count > 0
    assert num_events == exact_count
    assert close(float(distinct_devices), exact_devices), (distinct_devices, exact_devices)


@pytest.mark.parametrize(
    ("name", "customer"), [("hourly_trend_2_days", None), ("hourly_trend_2_days_customer", 1)]
)
def test_hourly_trend_matches_raw_events(loaded, name, customer):
    where = "" if customer is None else f"AND customer_id = {customer}"
    lab_rows, raw_rows = in_one_transaction(
        loaded,
        load_queries()[name].sql,
        f"""SELECT {HOUR} h, count(*), count(DISTINCT device_id), count(DISTINCT session_id)
            FROM events WHERE {LAST_2_DAYS} {where} GROUP BY h""",
    )
    lab = {row[0]: row[1:] for row in lab_rows}
    raw = {row[0]: row[1:] for row in raw_rows}
    assert lab.keys() == raw.keys()
    assert sum(r[1] for r in raw.values()) >= 10_000  # distinct devices, summed over hours
    for hour, (count, devices, sessions) in raw.items():
        assert lab[hour][0] == count
        assert close(float(lab[hour][1]), devices)
        assert close(float(lab[hour][2]), sessions)


def test_top_devices_equal_the_exact_top_ten(loaded):
    (lab_rows,) = in_one_transaction(loaded, load_queries()["top_devices_30_minutes_customer"].sql)
    exact = query(
        loaded,
        """SELECT device_id FROM events WHERE customer_id = 2 GROUP BY device_id
           ORDER BY count(*) DESC LIMIT 10""",
    )
    assert [int(row[0]) for row in lab_rows] == [row[0] for row in exact]
    assert [row[0] for row in exact] == sorted(HEAVY, key=HEAVY.get, reverse=True)[:10]


def test_distinct_estimates_hold_at_ten_thousand_values(loaded):
    (row,) = query(
        loaded,
        """SELECT hll_cardinality(hll_union_agg(device_distinct_count)),
                  hll_cardinality(hll_union_agg(session_distinct_count))
           FROM rollup_events_1hr""",
    )
    (exact,) = query(
        loaded, "SELECT count(DISTINCT device_id), count(DISTINCT session_id) FROM events"
    )
    assert min(exact) >= 10_000
    assert close(row[0], exact[0]) and close(row[1], exact[1])


def test_late_events_merge_into_their_bucket_once(tier):
    main = tier.db
    with bootstrapped_database(main) as db:
        now = datetime.now(UTC)
        rng = random.Random(5)
        copy_events(db, synthetic_events(rng, 5_000, now - timedelta(minutes=40), 600))
        aggregate(db)
        aggregate(db)  # nothing new: nothing changes
        # late data for buckets that were already aggregated
        copy_events(db, synthetic_events(rng, 700, now - timedelta(minutes=40), 600))
        aggregate(db)
        for table, bucket in (("rollup_events_5min", BUCKET_5MIN), ("rollup_events_1hr", HOUR)):
            column = "minute" if table.endswith("5min") else "hour"
            rolled = dict(query(db, f"SELECT {column}, sum(event_count) FROM {table} GROUP BY 1"))
            raw = dict(query(db, f"SELECT {bucket}, count(*) FROM events GROUP BY 1"))
            assert rolled == raw
        (total,) = query(db, "SELECT sum(event_count) FROM rollup_events_5min")
        assert total[0] == 5_000 + 700 + 2 * sum(HEAVY.values())


def test_concurrent_aggregations_while_loading_do_not_double_count(tier):
    main = tier.db
    with bootstrapped_database(main) as db:
        now = datetime.now(UTC)
        rng = random.Random(9)
        errors: list[BaseException] = []

        def loader() -> None:
            for _ in range(6):
                copy_events(db, synthetic_events(rng, 1_500, now - timedelta(minutes=20), 900))

        def aggregator() -> None:
            try:
                for _ in range(8):
                    aggregate(db)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=loader)] + [
            threading.Thread(target=aggregator) for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors
        aggregate(db)
        (raw,) = query(db, "SELECT count(*) FROM events")
        (five,) = query(db, "SELECT sum(event_count) FROM rollup_events_5min")
        (hour,) = query(db, "SELECT sum(event_count) FROM rollup_events_1hr")
        assert raw[0] == five[0] == hour[0] == 6 * (1_500 + sum(HEAVY.values()))


def test_after_a_pause_past_the_premade_window_rows_still_land_in_real_partitions(tier):
    main = tier.db
    with bootstrapped_database(main) as db:
        # The pause: every partition from 10 minutes ago on is gone, as if the premade window
        # had run out while nothing was ingested. Maintenance (scheduled every minute) runs.
        query(
            db,
            """DO $$ DECLARE p record; BEGIN
            FOR p IN SELECT partition_schemaname || '.' || partition_tablename AS t
                     FROM partman.show_partitions('public.events')
            LOOP
              IF (SELECT child_start_time FROM partman.show_partition_info(p.t))
                 >= now() - interval '10 minutes' THEN EXECUTE 'DROP TABLE ' || p.t; END IF;
            END LOOP; END $$""",
        )
        (before,) = query(db, "SELECT count(*) FROM partman.show_partitions('public.events')")
        query(db, "SELECT partman.run_maintenance(p_analyze := false)")
        (after,) = query(db, "SELECT count(*) FROM partman.show_partitions('public.events')")
        assert after[0] > before[0]
        now = datetime.now(UTC)
        rows = synthetic_events(random.Random(3), 300, now - timedelta(minutes=2), 120)
        copy_events(db, [*rows, (now + timedelta(hours=6), 1, "click", "India", "chrome", 1, 1)])
        assert query(db, "SELECT count(*) FROM ONLY events_default") == [(0,)]
        (placed,) = query(db, "SELECT count(*) FROM events")
        assert placed[0] == len(rows) + 1


# The lab's own aggregation (0005's SELECT), the oracle for 0010's single-event shortcut.
LAB_ROLLUP = """
SELECT customer_id, event_type, country, browser, {bucket} AS bucket, count(*) AS events,
       hll_add_agg(hll_hash_bigint(device_id), 14) AS devices,
       hll_add_agg(hll_hash_bigint(session_id), 14) AS sessions,
       topn_add_agg(device_id::text) AS top_devices
FROM events GROUP BY 1, 2, 3, 4, 5
"""


@pytest.mark.parametrize(
    ("table", "bucket_column", "bucket"),
    [("rollup_events_5min", "minute", BUCKET_5MIN), ("rollup_events_1hr", "hour", HOUR)],
    ids=["5min", "1hr"],
)
def test_rollup_rows_are_byte_for_byte_the_labs_aggregates(tier, table, bucket_column, bucket):
    with bootstrapped_database(tier.db) as db:
        start = datetime.now(UTC) - timedelta(minutes=50)
        rows = synthetic_events(random.Random(5), 20_000, start, 2900)
        # NULL ids, alone in their group and among others: the aggregates' own NULL handling
        rows += [
            (start, 5000, "buy", "India", "opera", None, 7),
            (start, 5001, "buy", "India", "opera", 8, None),
        ]
        rows += [(start, 2, "click", "India", "chrome", None, None)] * 2
        copy_events(db, rows)
        aggregate(db)
        (groups,) = query(
            db,
            f"""WITH lab AS ({LAB_ROLLUP.format(bucket=bucket)})
                SELECT count(*) FILTER (WHERE r.customer_id IS NULL),
                       count(*) FILTER (WHERE r.customer_id IS NOT NULL
                           AND r.event_count = lab.events
                           AND r.device_distinct_count IS NOT DISTINCT FROM lab.devices
                           AND r.session_distinct_count IS NOT DISTINCT FROM lab.sessions
                           AND r.top_devices_1000 IS NOT DISTINCT FROM lab.top_devices),
                       count(*) FILTER (WHERE lab.events = 1), count(*)
                FROM lab LEFT JOIN {table} r
                  ON (r.customer_id, r.event_type, r.country, r.browser, r.{bucket_column})
                   = (lab.customer_id, lab.event_type, lab.country, lab.browser, lab.bucket)""",
        )
        missing, equal, single, total = groups
        assert missing == 0 and equal == total, groups
        assert single > 1000  # the shortcut was taken, and often
