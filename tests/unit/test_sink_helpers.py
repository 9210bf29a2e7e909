"""Pure parts of the sink: ledger entries, error classes, CSV for COPY."""

import datetime

import psycopg2
import pyarrow as pa
import pytest

from clickstream_pipeline.ingest.ledger import ledger_ranges
from clickstream_pipeline.ingest.routed import NOTHING_WRITTEN, route_outputs
from clickstream_pipeline.ingest.sink import row_specific, to_csv
from clickstream_pipeline.warehouse.database import is_transient


def test_a_span_covers_a_tasks_contiguous_range():
    assert ledger_ranges(pa.array([7, 3, 5, 4]), "span") == [(3, 7, 4)]


def test_runs_record_each_stretch_of_consecutive_offsets():
    assert ledger_ranges(pa.array([10, 2, 3, 4, 12, 11, 20]), "runs") == [
        (2, 4, 3),
        (10, 12, 3),
        (20, 20, 1),
    ]


class FakePgError(psycopg2.DatabaseError):
    """psycopg2's errors carry `pgcode`; this one lets a test choose it."""

    def __init__(self, code):
        super().__init__("x")
        self._code = code

    @property
    def pgcode(self):
        return self._code


@pytest.mark.parametrize(
    ("code", "transient", "per_row"),
    [
        ("57P01", True, False),  # admin shutdown
        ("40001", True, False),  # serialization failure
        ("40P01", True, False),  # deadlock
        ("23505", True, True),  # the ledger's key: another attempt committed first
        ("23514", False, True),  # check / no partition for the row
        ("22P02", False, True),  # invalid text representation
        ("22P04", False, False),  # bad COPY format: the whole statement, not a row
        ("42P01", False, False),  # undefined table
    ],
)
def test_error_classes(code, transient, per_row):
    error = FakePgError(code)
    assert (is_transient(error), row_specific(error)) == (transient, per_row)


def test_a_lost_connection_is_transient():
    assert is_transient(psycopg2.OperationalError("server closed the connection unexpectedly"))
    assert is_transient(psycopg2.InterfaceError("connection already closed"))


def test_csv_for_copy_keeps_nulls_empty_and_quotes_apart():
    table = pa.table(
        {
            "t": pa.array(
                [datetime.datetime(2026, 1, 2, 3, 4, 5, 600000)], pa.timestamp("us", "UTC")
            ),
            "s": ['a "b", \\N\n'],
            "n": pa.array([None], pa.string()),
        }
    )
    assert to_csv(table).getvalue() == b'2026-01-02 03:04:05.600000Z,"a ""b"", \\N\n",\n'


def test_conninfo_round_trips_awkward_values_and_drops_unset_ones():
    from psycopg2.extensions import parse_dsn

    from clickstream_pipeline.ingest.sink import conninfo

    kwargs = {
        "host": "db.example.com",
        "port": 5432,
        "dbname": "click stream",
        "user": "o'brien",
        "password": "p\\a's s=w'\\",
        "sslmode": None,
    }
    assert parse_dsn(conninfo(kwargs)) == {k: str(v) for k, v in kwargs.items() if v is not None}


def partition_rows() -> pa.Table:
    stamp = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    return pa.table(
        {
            "kafka_offset": pa.array([10, 11, 12, 13], pa.int64()),
            "kafka_timestamp": pa.array(
                [stamp + datetime.timedelta(seconds=s) for s in (0, 1, 2, 3)],
                pa.timestamp("us", "UTC"),
            ),
            "customer_id": pa.array([7, 8, 7, 7], pa.int64()),
            "reject_reason": pa.array([None] * 4, pa.string()),
        }
    )


def test_a_partition_written_returns_its_rows_per_customer_only_when_asked():
    rows = partition_rows()
    written = {**NOTHING_WRITTEN, "written": 4, "attempts": 1}
    routed = pa.Table.from_batches(list(route_outputs("t", 0, rows, written, rows))).to_pylist()
    tenants = {
        r["customer_id"]: (r["rows_in"], r["oldest"].second)
        for r in routed
        if r["kind"] == "tenant"
    }
    assert tenants == {7: (3, 0), 8: (1, 1)}
    assert [r["kind"] for r in routed if r["kind"] != "tenant"] == ["stats"]
    unasked = list(route_outputs("t", 0, rows, written))  # tenant_freshness_top = 0
    assert [r["kind"] for r in pa.Table.from_batches(unasked).to_pylist()] == ["stats"]
    replayed = {**written, "written": 0, "duplicates": 4}  # a replay's delays mean nothing
    kinds = {
        r["kind"]
        for r in pa.Table.from_batches(
            list(route_outputs("t", 0, rows, replayed, rows))
        ).to_pylist()
    }
    assert kinds == {"stats"}
