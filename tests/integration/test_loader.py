"""The bulk loader against the local PostgreSQL: files in, exactly their rows in `events`."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from clickstream_pipeline.core.errors import DatabaseError
from clickstream_pipeline.jobs import load as load_job
from clickstream_pipeline.traffic.generator import (
    LAB_HEADER,
    lab_uniform_events,
    storefront_events,
    write_csv_files,
)
from clickstream_pipeline.traffic.loader import load_files
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.db import bootstrapped_database, query
from devkit.metrics import of, scrape
from devkit.ports import free_port


@pytest.fixture(scope="module")
def bootstrapped(tier):
    """A bootstrapped scratch database (events partitioned as in production)."""
    main = tier.db
    with bootstrapped_database(main) as scratch:
        yield scratch


@pytest.fixture
def db(bootstrapped):
    """The scratch database with an empty events table."""
    query(bootstrapped, "TRUNCATE events")
    assert query(bootstrapped, "SELECT count(*) FROM events") == [(0,)]
    return bootstrapped


def csv_rows(paths: list[Path]) -> Counter:
    rows: Counter = Counter()
    for path in paths:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            rows.update((int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5])) for r in reader)
    return rows


def events_in(db) -> Counter:
    return Counter(
        query(
            db,
            "SELECT customer_id, event_type, country, browser, device_id, session_id FROM events",
        )
    )


def jdbc_url(params: ConnectionParams) -> str:
    return params.jdbc_url(with_credentials=True)


def test_parallel_copy_loads_exactly_the_rows_written(db, tmp_path):
    written = write_csv_files(tmp_path / "store", storefront_events(seed=6), files=5, rows=4001)
    written += write_csv_files(tmp_path / "lab", lab_uniform_events(seed=6), files=2, rows=2500)
    paths = [p for p, _ in written]

    result = load_files(db, paths, streams=3, progress=False)

    assert result.rows == sum(n for _, n in written) == 5 * 4001 + 2 * 2500
    assert sorted(f.rows for f in result.files) == sorted(n for _, n in written)
    assert result.streams == 3 and result.rows_per_s > 0
    assert query(db, "SELECT count(*) FROM events") == [(result.rows,)]
    assert events_in(db) == csv_rows(paths)
    # the table's defaults applied: event_time now(), a fresh event_id each, no Kafka columns
    assert query(
        db,
        "SELECT count(*) FILTER (WHERE event_time > now() - interval '10 minutes'),"
        " count(DISTINCT event_id), count(kafka_topic) FROM events",
    ) == [(result.rows, result.rows, 0)]


def test_the_job_loads_a_folder_with_the_database_secret(db, tmp_path, monkeypatch, capsys):
    write_csv_files(tmp_path, lab_uniform_events(seed=2), files=3, rows=1500)
    monkeypatch.setenv("DATABASE_CONNECTION_STRING", jdbc_url(db))
    code = load_job.main(
        ["--env", "local", "--set", "secrets.backend=env", str(tmp_path), "--no-progress"]
    )
    assert code == 0
    assert query(db, "SELECT count(*) FROM events") == [(4500,)]
    out = capsys.readouterr().out
    assert "loaded 4,500 rows from 3 files" in out and "rows/s" in out
    assert (db.password.get_secret_value() if db.password else "\0") not in out


def test_with_a_metrics_port_the_loader_serves_its_counts(db, tmp_path, monkeypatch):
    written = write_csv_files(tmp_path, lab_uniform_events(seed=3), files=4, rows=2000)
    monkeypatch.setenv("DATABASE_CONNECTION_STRING", jdbc_url(db))
    port = free_port()
    args = ["--env", "local", "--set", "secrets.backend=env", str(tmp_path), "--no-progress"]
    assert load_job.main([*args, "--metrics-port", str(port)]) == 0
    samples = scrape(port)  # the endpoint lives as long as the process: this test's
    table = {"table": "public.events"}
    assert of(samples, "clickstream_load_rows_total", **table) == 8000
    assert of(samples, "clickstream_load_files_total", **table) == len(written) == 4
    assert of(samples, "clickstream_load_bytes_total", **table) == sum(
        p.stat().st_size for p, _ in written
    )


def test_a_bad_file_is_rolled_back_alone_and_reported(db, tmp_path):
    good = write_csv_files(tmp_path, storefront_events(seed=1), files=1, rows=3000)[0][0]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{LAB_HEADER}\n1,buy,France,opera,8,9\nnot-a-number,buy,France,opera,8,9\n")

    with pytest.raises(DatabaseError, match=r"bad\.csv"):
        load_files(db, [good, bad], streams=1, progress=False)
    # the good file (largest, loaded first) committed; nothing of the bad one
    assert query(db, "SELECT count(*) FROM events") == [(3000,)]


def test_a_wrong_header_loads_nothing_and_exits_2(db, tmp_path, monkeypatch):
    write_csv_files(tmp_path, lab_uniform_events(seed=1), files=2, rows=100)
    (tmp_path / "3.csv").write_text("customer,event\n1,buy\n")
    monkeypatch.setenv("DATABASE_CONNECTION_STRING", jdbc_url(db))
    code = load_job.main(
        ["--env", "local", "--set", "secrets.backend=env", str(tmp_path), "--no-progress"]
    )
    assert code == 2
    assert query(db, "SELECT count(*) FROM events") == [(0,)]


def test_columns_follow_the_header_and_event_time_may_be_given(db, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "session_id,device_id,event_time,browser,country,event_type,customer_id\n"
        '9,8,2026-01-02T03:04:05.678Z,opera,"Côte d\'Ivoire, Abidjan",buy,7\n'
    )
    assert load_files(db, [path], progress=False).rows == 1
    assert query(
        db,
        "SELECT customer_id, event_type, country, browser, device_id, session_id,"
        " to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') FROM events",
    ) == [(7, "buy", "Côte d'Ivoire, Abidjan", "opera", 8, 9, "2026-01-02 03:04:05.678")]
