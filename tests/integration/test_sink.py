"""The sink's task function against a real database, without Spark: its input is what
`mapInArrow` hands a task (Arrow batches of validated rows), its output what it returns."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

from clickstream_pipeline.core.schema import EVENT_COLUMNS
from clickstream_pipeline.ingest.sink import SinkSettings, write_and_route
from clickstream_pipeline.warehouse.database import ConnectionParams, connect
from devkit.db import bootstrapped_database, execute, query
from devkit.waits import wait_until

UTC = datetime.UTC
TS = pa.timestamp("us", tz="UTC")
VALIDATED = pa.schema(
    [
        ("event_time", TS),
        ("customer_id", pa.int64()),
        ("event_type", pa.string()),
        ("country", pa.string()),
        ("browser", pa.string()),
        ("device_id", pa.int64()),
        ("session_id", pa.int64()),
        ("properties", pa.string()),
        ("kafka_topic", pa.string()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("source_event_id", pa.int64()),
        ("kafka_timestamp", TS),
        ("reject_reason", pa.string()),
        ("raw_key", pa.binary()),
        ("raw_value", pa.binary()),
    ]
)
AWKWARD = ['a "quoted", comma', "back\\slash \\N", "", "日本 😀", "'); DROP TABLE events; --"]
NOW = datetime.datetime.now(UTC).replace(microsecond=123456)


@pytest.fixture(scope="module")
def db(tier) -> Iterator[ConnectionParams]:
    with bootstrapped_database(tier.db) as d:
        yield d


def rows(topic: str, partition: int, offsets: range, invalid_every: int = 0) -> list[dict]:
    out = []
    for o in offsets:
        bad = invalid_every and o % invalid_every == 0
        out.append(
            {
                "event_time": NOW - datetime.timedelta(seconds=o),
                "customer_id": 1 + o % 7,
                "event_type": "click",
                "country": AWKWARD[o % len(AWKWARD)],
                "browser": "chrome" if o % 3 else None,
                "device_id": o,
                "session_id": o // 3,
                "properties": f'{{"page": "/p/{o}", "n": [{o}, null]}}' if o % 4 == 0 else None,
                "kafka_topic": topic,
                "kafka_partition": partition,
                "kafka_offset": o,
                "source_event_id": o if o % 2 else None,
                "kafka_timestamp": NOW,
                "reject_reason": "malformed_json" if bad else None,
                "raw_key": None,
                "raw_value": b"{broken" if bad else None,
            }
        )
    return out


def batches(records: list[dict], size: int = 100) -> list[pa.RecordBatch]:
    return [
        pa.RecordBatch.from_pylist(records[i : i + size], schema=VALIDATED)
        for i in range(0, len(records), size)
    ]


def settings(db: ConnectionParams, sink: str, **kw: object) -> SinkSettings:
    return SinkSettings(
        connect_kwargs=db.psycopg_kwargs("test-sink", 5),
        schema_name="public",
        table_name="events",
        sink=sink,
        batch_id=7,
        backoff_s=0.01,
        **kw,  # type: ignore[arg-type]
    )


def run(s: SinkSettings, input_batches: list[pa.RecordBatch]) -> tuple[list[dict], list[dict]]:
    """(stats rows, dead rows) the task returns."""
    out = pa.Table.from_batches(list(write_and_route(s)(iter(input_batches)))).to_pylist()
    return [r for r in out if r["kind"] == "stats"], [r for r in out if r["kind"] == "dead"]


def stored(db: ConnectionParams, topic: str) -> list[tuple]:
    columns = ", ".join(EVENT_COLUMNS)
    return query(
        db,
        f"SELECT {columns} FROM events WHERE kafka_topic = %s ORDER BY kafka_offset",
        (topic,),
    )


def expected(records: list[dict]) -> list[tuple]:
    """The rows `events` should hold (psycopg2 reads jsonb as Python values)."""

    def value(record: dict, column: str) -> object:
        text = record[column]
        return json.loads(text) if column == "properties" and text is not None else text

    return [
        tuple(value(r, c) for c in EVENT_COLUMNS) for r in records if r["reject_reason"] is None
    ]


def ledger(db: ConnectionParams, topic: str) -> list[tuple]:
    return query(
        db,
        """SELECT kafka_partition, start_offset, end_offset, row_count, batch_id
           FROM clickstream_ingest_ledger WHERE kafka_topic = %s ORDER BY 1, 2""",
        (topic,),
    )


def test_binary_path_writes_every_valid_row_byte_exact_with_one_ledger_entry(db, caplog):
    records = rows("t-binary", 3, range(100, 1100), invalid_every=97)
    with caplog.at_level(logging.WARNING, "clickstream_pipeline.ingest.sink"):
        stats, dead = run(settings(db, "s1"), batches(records))
    assert not caplog.records  # the fast path did it all
    assert stored(db, "t-binary") == expected(records)
    assert ledger(db, "t-binary") == [(3, 100, 1099, len(expected(records)), 7)]
    broken = [o for o in range(100, 1100) if o % 97 == 0]
    (stat,) = stats
    assert (stat["rows_in"], stat["written"], stat["duplicates"]) == (1000, 1000 - 10, 0)
    assert stat["dead"] == len(dead) == len(broken) == 10
    assert {(d["offset"], d["raw_value"], d["reason"]) for d in dead} == {
        (o, b"{broken", "malformed_json") for o in broken
    }


def test_binary_and_csv_paths_store_the_same_values(db):
    records = rows("t-binary-csv", 0, range(500))
    run(settings(db, "s2b"), batches(records))
    run(settings(db, "s2c", copy_format="csv"), batches(rows("t-csv", 0, range(500))))
    binary, csv = stored(db, "t-binary-csv"), stored(db, "t-csv")
    t = EVENT_COLUMNS.index("kafka_topic")
    strip = [r[:t] + r[t + 1 :] for r in binary], [r[:t] + r[t + 1 :] for r in csv]  # no topic
    assert strip[0] == strip[1]
    assert binary == expected(records)


def test_a_replay_skips_what_is_committed_even_in_part(db):
    records = rows("t-replay", 1, range(0, 3000))
    query(
        db,
        """INSERT INTO clickstream_ingest_ledger (sink, kafka_topic, kafka_partition,
               start_offset, end_offset, batch_id, row_count)
           VALUES ('s3', 't-replay', 1, 1000, 1999, 6, 1000)""",
    )
    first, _ = run(settings(db, "s3"), batches(records, 250))
    again, _ = run(settings(db, "s3"), batches(records, 250))
    assert (first[0]["written"], first[0]["duplicates"]) == (2000, 1000)
    assert (again[0]["written"], again[0]["duplicates"]) == (0, 3000)
    offset = EVENT_COLUMNS.index("kafka_offset")
    assert [r[offset] for r in stored(db, "t-replay")] == [*range(0, 1000), *range(2000, 3000)]


def test_a_row_the_database_refuses_sends_the_task_down_the_csv_path(tier, db, caplog):
    records = rows("t-refused", 2, range(0, 600))
    query(
        db,
        "ALTER TABLE events ADD CONSTRAINT no_device_333 "
        "CHECK (kafka_topic <> 't-refused' OR device_id <> 333) NOT VALID",
    )
    try:
        with caplog.at_level(logging.WARNING, "clickstream_pipeline.ingest.sink"):
            stats, dead = run(settings(db, "s4"), batches(records))
    finally:
        query(db, "ALTER TABLE events DROP CONSTRAINT no_device_333")
    # Citus relays the worker's check violation in a COPY as an internal error (XX000)
    code = "XX000" if tier.citus else "23514"
    assert f"SQLSTATE {code}" in caplog.text and "writing the task's rows as CSV" in caplog.text
    device = EVENT_COLUMNS.index("device_id")
    assert stored(db, "t-refused") == [r for r in expected(records) if r[device] != 333]
    assert [(d["offset"], d["reason"][:13]) for d in dead] == [(333, "db_rejected: ")]
    assert (stats[0]["written"], stats[0]["dead"], stats[0]["db_rejected"]) == (599, 1, 1)


def test_a_transient_failure_at_commit_is_retried_and_writes_once(db, caplog):
    # The first COPY's commit fails with a serialization failure (40001), as a Citus 2PC
    # or a failover might; a sequence is not rolled back, so only the first attempt fails.
    query(
        db,
        """CREATE SEQUENCE fail_once;
           CREATE FUNCTION fail_first_commit() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF nextval('fail_once') = 1 THEN
                   RAISE EXCEPTION 'injected' USING ERRCODE = '40001';
               END IF;
               RETURN NULL;
           END $$;
           CREATE CONSTRAINT TRIGGER fail_first_commit AFTER INSERT ON clickstream_ingest_ledger
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_first_commit()""",
    )
    records = rows("t-transient", 0, range(0, 400))
    try:
        with caplog.at_level(logging.WARNING, "clickstream_pipeline.ingest.sink"):
            stats, _ = run(settings(db, "s5"), batches(records))
    finally:
        query(db, "DROP TRIGGER fail_first_commit ON clickstream_ingest_ledger")
    assert "SQLSTATE 40001" in caplog.text
    assert stored(db, "t-transient") == expected(records)
    assert stats[0]["written"] == 400
    assert ledger(db, "t-transient") == [(0, 0, 399, 400, 7)]


def test_an_input_error_midway_is_raised_and_commits_nothing(db):
    good = batches(rows("t-input", 0, range(0, 300)))

    def failing() -> Iterator[pa.RecordBatch]:
        yield from good[:2]
        raise OSError("the Spark side went away")

    with pytest.raises(OSError, match="Spark side"):
        list(write_and_route(settings(db, "s6"))(failing()))
    assert stored(db, "t-input") == [] and ledger(db, "t-input") == []


SESSIONS = """SELECT pid, state FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'test-sink'
      AND pid <> pg_backend_pid() ORDER BY pid"""


def test_tasks_keep_their_connections_and_leave_no_open_transaction(db):
    # A Python worker opens ADBC's database object (the server's type catalog) once and keeps
    # a connection for the COPY and one for ledger lookups between its tasks: the same server
    # sessions serve every task, idle between them, never "idle in transaction" (that would
    # hold back vacuum and block DDL).
    s = settings(db, "s7")
    seen = []
    for n in range(3):
        stats, _ = run(s, batches(rows(f"t-shared-{n}", 0, range(0, 50))))
        assert stats[0]["written"] == 50
        seen.append(query(db, SESSIONS))
    assert seen[0] == seen[1] == seen[2]
    assert [state for _, state in seen[0]] == ["idle"] * 3


def test_kept_connections_the_server_dropped_cost_one_careful_task_and_no_row(db, caplog):
    s = settings(db, "s8")
    first = rows("t-dropped", 0, range(0, 50))
    run(s, batches(first))
    query(db, "SELECT pg_terminate_backend(pid) FROM (" + SESSIONS + ") kept")
    second, third = rows("t-dropped", 0, range(50, 100)), rows("t-dropped", 0, range(100, 150))
    with caplog.at_level(logging.WARNING, "clickstream_pipeline.ingest.sink"):
        stats, _ = run(s, batches(second))
        assert stats[0]["written"] == 50 and "writing the task's rows as CSV" in caplog.text
        caplog.clear()
        stats, _ = run(s, batches(third))  # on new connections, the fast path again
        assert stats[0]["written"] == 50 and caplog.text == ""
    assert stored(db, "t-dropped") == expected(first + second + third)
    assert sum(count for _, _, _, count, _ in ledger(db, "t-dropped")) == 150


def test_an_attempt_that_loses_the_ledger_key_during_its_copy_writes_nothing(db, caplog):
    # Another attempt at the same range (a speculative or zombie task) commits its ledger entry
    # while this one streams its COPY: this one's ledger insert waits on the key, then fails
    # with 23505 once the other commits, and its rows roll back with it.
    records = rows("t-race", 0, range(0, 500))
    other = connect(db)
    with other.cursor() as cur:
        cur.execute(
            """INSERT INTO clickstream_ingest_ledger (sink, kafka_topic, kafka_partition,
                   start_offset, end_offset, batch_id, row_count)
               VALUES ('s-race', 't-race', 0, 0, 499, 6, 500)"""
        )
    watcher = connect(db)
    watcher.autocommit = True

    def commit_once_the_sink_waits_on_the_key() -> None:
        def sink_waits() -> bool:
            with watcher.cursor() as cur:
                cur.execute(
                    """SELECT count(*) FROM pg_stat_activity
                       WHERE wait_event_type = 'Lock'
                         AND query LIKE 'INSERT INTO clickstream_ingest_ledger%'"""
                )
                return cur.fetchone()[0] > 0

        wait_until(sink_waits, 60, "the sink's ledger insert waiting on the key")
        other.commit()

    committer = threading.Thread(target=commit_once_the_sink_waits_on_the_key)
    committer.start()
    try:
        with caplog.at_level(logging.WARNING, "clickstream_pipeline.ingest.sink"):
            stats, _ = run(settings(db, "s-race"), batches(records))
    finally:
        committer.join(60)
        other.close()
        watcher.close()
    assert "SQLSTATE 23505" in caplog.text
    assert (stats[0]["written"], stats[0]["duplicates"]) == (0, 500)
    assert stored(db, "t-race") == []
    assert ledger(db, "t-race") == [(0, 0, 499, 500, 6)]


def test_a_field_added_to_the_model_and_to_the_table_lands_through_both_copy_paths(tier, db):
    from pyspark.sql.pandas.types import to_arrow_schema

    from clickstream_pipeline.core.errors import DatabaseError
    from clickstream_pipeline.core.model import LAB, FieldSpec
    from clickstream_pipeline.core.schema import validated_schema
    from clickstream_pipeline.ingest.sink import check_target_columns

    model = LAB.model_copy(update={"fields": {**LAB.fields, "page": FieldSpec(type="text")}})
    binary, csv = (settings(db, f"s-page-{f}", model=model) for f in "bc")
    with pytest.raises(DatabaseError, match="has no column page of the event model: add"):
        check_target_columns(binary)
    execute(db, "ALTER TABLE events ADD COLUMN page text")
    check_target_columns(binary)
    schema = to_arrow_schema(validated_schema(model))
    for topic, sink, copy in (("t-page-binary", binary, "binary"), ("t-page-csv", csv, "csv")):
        records = [
            {**r, "page": None if r["kafka_offset"] % 5 == 0 else f'/p/{r["kafka_offset"]},"x"'}
            for r in rows(topic, 0, range(300))
        ]
        run(
            dataclasses.replace(sink, copy_format=copy),
            [pa.RecordBatch.from_pylist(records, schema)],
        )
        got = query(
            db, "SELECT kafka_offset, page FROM events WHERE kafka_topic = %s ORDER BY 1", (topic,)
        )
        assert got == [(r["kafka_offset"], r["page"]) for r in records], copy
    if tier.citus:  # the new column reached every shard
        shards = query(
            db,
            """SELECT count(*) FILTER (WHERE result = 'page'), count(*) FROM run_command_on_shards(
                   'events', $$SELECT attname FROM pg_attribute WHERE attrelid = '%s'::regclass
                               AND attname = 'page'$$)""",
        )
        assert shards[0][0] == shards[0][1] > 0


def test_every_field_type_of_the_example_model_lands_through_both_copy_paths(db):
    from decimal import Decimal

    from pyspark.sql.pandas.types import to_arrow_schema

    from clickstream_pipeline.core.model import load_model
    from clickstream_pipeline.core.schema import validated_schema
    from clickstream_pipeline.ingest.sink import check_target_columns

    model = load_model("web_analytics")  # its columns: added by the bootstrap
    schema = to_arrow_schema(validated_schema(model))
    for copy in ("binary", "csv"):
        topic = f"t-web-{copy}"
        sink = settings(db, f"s-web-{copy}", model=model, copy_format=copy)
        check_target_columns(sink)
        records = [
            {
                "event_time": NOW - datetime.timedelta(seconds=o),
                "customer_id": 1 + o % 7,
                "session_id": o + 1,
                "event_type": "purchase",
                "page_url": f'https://shop.example/p/{o}?q="x",y',
                "referrer": None if o % 2 else "",
                "utm_source": "news",
                "utm_medium": None,
                "utm_campaign": "Winter, Sale",
                "duration_ms": o * 10,
                "revenue": None if o % 3 == 0 else Decimal(o) / 4,
                "logged_in": o % 2 == 0,
                "context": None if o % 4 == 0 else json.dumps({"o": o, "tags": ["a", '"b"']}),
                "properties": '{"coupon": "X1"}' if o % 5 == 0 else None,
                "kafka_topic": topic,
                "kafka_partition": 0,
                "kafka_offset": o,
                "source_event_id": o + 1,
                "kafka_timestamp": NOW,
                "reject_reason": None,
                "raw_key": None,
                "raw_value": None,
            }
            for o in range(300)
        ]
        stats, dead = run(sink, [pa.RecordBatch.from_pylist(records, schema)])
        assert (stats[0]["written"], dead) == (300, []), copy
        got = query(
            db,
            "SELECT kafka_offset, page_url, referrer, utm_campaign, duration_ms, revenue, "
            "logged_in, context, properties FROM events WHERE kafka_topic = %s ORDER BY 1",
            (topic,),
        )
        assert got == [
            (
                r["kafka_offset"],
                r["page_url"],
                r["referrer"],
                r["utm_campaign"],
                r["duration_ms"],
                r["revenue"],
                r["logged_in"],
                None if r["context"] is None else json.loads(r["context"]),
                None if r["properties"] is None else json.loads(r["properties"]),
            )
            for r in records
        ], copy
