"""Helpers for tests that need a database of their own on the local PostgreSQL."""

from __future__ import annotations

import contextlib
import csv
import io
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import replace

from psycopg2 import sql

from clickstream_pipeline.database import ConnectionParams, connect
from clickstream_pipeline.database import fetch as query  # noqa: F401  (the tests' name)
from clickstream_pipeline.migrations import load_migrations, migrate

LAB_COLUMNS = (
    "event_time",
    "customer_id",
    "event_type",
    "country",
    "browser",
    "device_id",
    "session_id",
)


def create_database(params: ConnectionParams, name: str) -> ConnectionParams:
    """A new empty database on the same server."""
    admin = connect(replace(params, dbname="postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        admin.close()
    return replace(params, dbname=name)


def drop_database(params: ConnectionParams, name: str) -> None:
    admin = connect(replace(params, dbname="postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    finally:
        admin.close()


def bootstrap(params: ConnectionParams) -> None:
    """Apply every migration, as the bootstrap job does."""
    conn = connect(params)
    try:
        migrate(conn, load_migrations())
    finally:
        conn.close()


@contextlib.contextmanager
def scratch_database(params: ConnectionParams, prefix: str = "test") -> Iterator[ConnectionParams]:
    """A new empty database on the same server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        yield create_database(params, name)
    finally:
        drop_database(params, name)


@contextlib.contextmanager
def bootstrapped_database(
    params: ConnectionParams, prefix: str = "test"
) -> Iterator[ConnectionParams]:
    """A scratch database with every migration applied."""
    with scratch_database(params, prefix) as db:
        bootstrap(db)
        yield db


def copy_events(params: ConnectionParams, rows: Iterable[tuple[object, ...]]) -> int:
    """COPY rows (in LAB_COLUMNS order) into events, as the lab's \\COPY does."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    buffer.seek(0)
    conn = connect(params)
    with conn, conn.cursor() as cur:
        cur.copy_expert(
            f"COPY events ({', '.join(LAB_COLUMNS)}) FROM STDIN WITH (FORMAT csv)", buffer
        )
    conn.close()
    return count
