"""The shipped migrations split into statements the way psql would send them."""

from __future__ import annotations

import hashlib

from clickstream_pipeline.warehouse.migrations import (
    EQUIVALENT_EARLIER_CHECKSUMS,
    Migration,
    load_migrations,
)


def test_statements_keep_dollar_quoted_bodies_whole_and_point_at_their_line():
    text = (
        "-- a comment\n"
        "CREATE TABLE t (x int);\n"
        "\n"
        "-- the function\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$\n"
        "BEGIN\n"
        "    PERFORM 1; RETURN 2;\n"
        "END\n"
        "$fn$;\n"
        "DO $$ BEGIN EXECUTE $q$SELECT ';'$q$; END $$;\n"
    )
    statements = Migration(1, "t", text).statements()
    assert [line for line, _ in statements] == [2, 5, 10]
    assert "PERFORM 1; RETURN 2;" in statements[1][1] and statements[1][1].endswith("$fn$;")
    assert statements[2][1].startswith("DO $$")


def test_every_shipped_file_splits_into_code_statements():
    for migration in load_migrations():
        statements = migration.statements()
        assert statements, migration.filename
        lines = migration.sql.splitlines()
        for line, text in statements:
            assert not lines[line - 1].lstrip().startswith("--"), (migration.filename, line)
            assert text.rstrip().endswith(";"), (migration.filename, line)


def test_an_equivalent_earlier_text_is_accepted_and_any_other_refused():
    (events,) = [m for m in load_migrations() if m.version == 3]
    (earlier,) = EQUIVALENT_EARLIER_CHECKSUMS[3]
    assert events.accepts(events.checksum) and events.accepts(earlier)
    assert not events.accepts(hashlib.sha256(b"something else").hexdigest())
    (other,) = [m for m in load_migrations() if m.version == 4]
    assert not other.accepts(earlier)
