"""The bootstrap job and its migrations against the real servers: PostgreSQL (hll, pg_partman
4.7, pg_cron) and the Citus cluster (citus, topn, pg_partman 5.1)."""

from __future__ import annotations

import dataclasses

import pytest

from clickstream_pipeline.core.model import load_model
from clickstream_pipeline.jobs import bootstrap
from clickstream_pipeline.warehouse.database import ConnectionParams, connect
from clickstream_pipeline.warehouse.migrations import (
    EQUIVALENT_EARLIER_CHECKSUMS,
    LEDGER,
    Migration,
    MigrationError,
    load_migrations,
    migrate,
    pending,
)
from clickstream_pipeline.warehouse.rollups import functions
from devkit.db import TEST_MODELS, query, scratch_database


@pytest.fixture(scope="module")
def main_db(db) -> ConnectionParams:
    return db


def test_bootstrap_twice_on_the_pipeline_database_second_run_changes_nothing(tier, main_db, capsys):
    assert bootstrap.main(["--env", tier.env]) == 0
    capsys.readouterr()
    assert bootstrap.main(["--env", tier.env]) == 0
    out = capsys.readouterr().out
    assert "bootstrap done: 0 applied" in out
    assert "(nothing changed)" in out
    assert "rollups unchanged: 8" in out and "rollups new" not in out
    versions = [v for (v,) in query(main_db, f"SELECT version FROM {LEDGER} ORDER BY 1")]
    assert versions == [m.version for m in load_migrations()]
    jobs = dict(query(main_db, "SELECT jobname, schedule FROM cron.job"))
    rollup_jobs = {f.name: f.schedule for m in TEST_MODELS for f in functions(load_model(m))}
    assert rollup_jobs["five_minutely_aggregation"] == "*/5 * * * *"  # the lab's, from its model
    assert jobs == {
        "clickstream_retention": "7 * * * *",
        "clickstream_stamp_rolled_up_batches": "* * * * *",
        "partman_run_maintenance": "* * * * *",
        **rollup_jobs,
    }
    assert "scheduled jobs: clickstream_retention (7 * * * *), clickstream_stamp_rolled_up" in out


def test_without_pg_cron_schedules_are_skipped_with_a_notice(main_db):
    with scratch_database(main_db) as db:  # pg_cron lives only in cron.database_name
        conn = connect(db)
        report = migrate(conn, load_migrations())
        conn.close()
        assert len(report.applied) == len(load_migrations())
        assert any("0006_cron_jobs.sql" in n and "no jobs scheduled" in n for n in report.notices)
        assert query(db, "SELECT to_regclass('cron.job')") == [(None,)]


def test_a_changed_applied_migration_is_refused(main_db):
    migrations = load_migrations()
    changed = [
        dataclasses.replace(m, sql=m.sql + "\n-- edited") if m.version == 4 else m
        for m in migrations
    ]
    conn = connect(main_db)
    with pytest.raises(MigrationError, match=r"0004_rollup_tables\.sql .* must never change"):
        pending(conn, changed)
    conn.close()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("CREATE TABLE half_done (x int); SELECT 1/0;", "division by zero"),
        # the body succeeds but its ledger row cannot be written: the body must go too
        (
            f"CREATE TABLE half_done (x int); INSERT INTO {LEDGER} VALUES (99, 'x', 'y');",
            "duplicate key",
        ),
    ],
)
def test_a_failing_migration_leaves_nothing_behind(main_db, body, error):
    broken = Migration(99, "broken", body)
    with scratch_database(main_db) as db:
        conn = connect(db)
        with pytest.raises(MigrationError, match=rf"0099_broken\.sql failed .*{error}"):
            migrate(conn, [*load_migrations(), broken])
        conn.close()
        assert query(db, "SELECT to_regclass('half_done')") == [(None,)]
        applied = [v for (v,) in query(db, f"SELECT version FROM {LEDGER} ORDER BY 1")]
        assert applied == [m.version for m in load_migrations()]


def test_dry_run_prints_pending_sql_and_changes_nothing(main_db, monkeypatch, capsys):
    with scratch_database(main_db) as db:
        monkeypatch.setenv("DATABASE_CONNECTION_STRING", db.jdbc_url(with_credentials=True))
        code = bootstrap.main(["--env", "local", "--set", "secrets.backend=env", "--dry-run"])
        out = capsys.readouterr().out
        assert code == 0
        assert f"{len(load_migrations())} of {len(load_migrations())} migrations pending" in out
        assert "CREATE TABLE IF NOT EXISTS public.events" in out
        assert query(db, "SELECT to_regclass('events'), to_regclass(%s)", (LEDGER,)) == [
            (None, None)
        ]


def test_exit_codes_tell_bad_config_from_database_errors(main_db, monkeypatch, caplog):
    monkeypatch.setenv("DATABASE_CONNECTION_STRING", "postgresql://not-jdbc")
    assert bootstrap.main(["--env", "local", "--set", "secrets.backend=env"]) == 2
    wrong = (
        f"jdbc:postgresql://{main_db.host}:{main_db.port}/{main_db.dbname}"
        "?user=citus&password=wrong-password-123"
    )
    monkeypatch.setenv("DATABASE_CONNECTION_STRING", wrong)
    assert bootstrap.main(["--env", "local", "--set", "secrets.backend=env"]) == 3
    assert "password authentication failed" in caplog.text
    assert "wrong-password-123" not in caplog.text


def test_a_failing_statement_is_named_by_file_line_and_text(main_db):
    body = "CREATE TABLE half_done (x int);\n\n-- the bad one\nSELECT no_such_function(1);\n"
    with scratch_database(main_db) as db:
        conn = connect(db)
        with pytest.raises(MigrationError) as failed:
            migrate(conn, [*load_migrations(), Migration(99, "broken", body)])
        conn.close()
        assert "0099_broken.sql failed at line 4 (SELECT no_such_function(1);)" in str(failed.value)
        assert "function no_such_function(integer) does not exist" in str(failed.value)
        assert query(db, "SELECT to_regclass('half_done')") == [(None,)]


def test_a_database_that_applied_the_earlier_0003_is_not_refused(main_db):
    with scratch_database(main_db) as db:
        conn = connect(db)
        migrate(conn, load_migrations())
        (earlier,) = EQUIVALENT_EARLIER_CHECKSUMS[3]
        query(db, f"UPDATE {LEDGER} SET checksum = %s WHERE version = 3", (earlier,))
        assert pending(conn, load_migrations()) == []
        query(db, f"UPDATE {LEDGER} SET checksum = 'f00' WHERE version = 3")
        with pytest.raises(MigrationError, match=r"0003_events\.sql .* must never change"):
            pending(conn, load_migrations())
        conn.close()


def test_a_database_of_the_previous_release_gains_properties_without_a_rewrite(tier, main_db):
    with scratch_database(main_db) as db:
        conn = connect(db)
        migrate(conn, [m for m in load_migrations() if m.version <= 13])
        query(
            db,
            "INSERT INTO events (event_time, customer_id, event_type, country, browser, "
            "device_id, session_id) SELECT now() - make_interval(mins => g % 90), g % 7 + 1, "
            "'click', 'FR', 'opera', g, g FROM generate_series(1, 500) g",
        )
        files = "SELECT c.relname, pg_relation_filenode(c.oid) FROM pg_inherits i " + (
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
        )
        before = dict(query(db, files))
        report = migrate(conn, load_migrations())
        conn.close()
        assert [m.version for m in report.applied] == [14, 15, 16]
        assert dict(query(db, files)) == before  # every partition kept its file: no rewrite
        assert query(db, "SELECT count(*), count(properties) FROM events") == [(500, 0)]
        if tier.citus:  # the column reached every shard
            (shards,) = query(
                db,
                """SELECT count(*) FILTER (WHERE result = '1'), count(*)
                   FROM run_command_on_shards('events', $$SELECT count(*) FROM pg_attribute
                       WHERE attrelid = '%s'::regclass AND attname = 'properties'$$)""",
            )
            assert shards[0] == shards[1] > 0
