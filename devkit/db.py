"""Databases of their own for tests and benchmarks, on the local PostgreSQL or Citus."""

from __future__ import annotations

import contextlib
import csv
import io
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import psycopg2.errors
from psycopg2 import sql
from pydantic import SecretStr

from clickstream_pipeline.core.config import load_config
from clickstream_pipeline.core.fields import LAB_FIELDS
from clickstream_pipeline.core.model import load_model
from clickstream_pipeline.warehouse.connection_string import libpq_conninfo
from clickstream_pipeline.warehouse.database import ConnectionParams, connect
from clickstream_pipeline.warehouse.database import fetch as query
from clickstream_pipeline.warehouse.event_table import apply_model
from clickstream_pipeline.warehouse.migrations import load_migrations, migrate
from clickstream_pipeline.warehouse.retention import apply_retention
from clickstream_pipeline.warehouse.rollups import apply_rollups

LAB_COLUMNS = ("event_time", *LAB_FIELDS)
# written by `make up` where no Citus can run here, with the reason
CITUS_UNAVAILABLE = Path(__file__).resolve().parent.parent / ".stack" / "citus.unavailable"


CITUS_JOIN_LOCK = 7_244_931  # advisory lock key: scratch databases join their cluster in turn


def execute(params: ConnectionParams, *statements: sql.Composable | str) -> None:
    """Each statement in autocommit mode, on a connection of its own."""
    conn = connect(params)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def citus_workers(params: ConnectionParams) -> list[ConnectionParams]:
    """The worker nodes of the Citus cluster behind `params` (none on plain PostgreSQL)."""
    if not query(params, "SELECT to_regclass('pg_dist_node') IS NOT NULL")[0][0]:
        return []
    rows = query(
        params, "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeport"
    )
    return [replace(params, host=host, port=port) for host, port in rows]


def create_database(params: ConnectionParams, name: str) -> ConnectionParams:
    """A new empty database on the same server; on Citus, on every node and joined up."""
    workers = citus_workers(params)
    for node in (params, *workers):
        execute(
            replace(node, dbname="postgres"),
            sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)),
        )
    db = replace(params, dbname=name)
    if workers:
        for node in workers:
            execute(replace(node, dbname=name), "CREATE EXTENSION citus")
        # one join at a time: citus_add_node updates the role on each worker, and two at
        # once fail with "tuple concurrently updated" (tests on two workers do this)
        lock = connect(replace(params, dbname="postgres"))
        try:
            with lock.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (CITUS_JOIN_LOCK,))
            execute(
                db,
                "CREATE EXTENSION citus",
                sql.SQL("SELECT citus_set_coordinator_host({}, {})").format(
                    sql.Literal(params.host), sql.Literal(params.port)
                ),
                *(
                    sql.SQL("SELECT citus_add_node({}, {})").format(
                        sql.Literal(node.host), sql.Literal(node.port)
                    )
                    for node in workers
                ),
            )
        finally:
            lock.close()  # the session's advisory lock goes with it
    return db


def drop_database(params: ConnectionParams, name: str) -> None:
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    for node in (params, *citus_workers(params)):
        for attempt in range(10):
            try:
                execute(replace(node, dbname="postgres"), drop)
                break
            except psycopg2.errors.ObjectInUse:
                # a Citus worker's maintenance daemon can reconnect between FORCE's
                # termination and the drop; it lets go within a second
                if attempt == 9:
                    raise
                time.sleep(0.5)


# Shards of each distributed table on the Citus tier, as `--env local-citus` bootstraps them.
CITUS_SHARD_COUNT = load_config("local-citus", environ={}).database.citus_shard_count


# The models the tests' databases hold: the lab's and the shipped example's.
TEST_MODELS = ("lab", "web_analytics")


def bootstrap(params: ConnectionParams, models: Iterable[str] = TEST_MODELS) -> None:
    """Apply every migration, then each event model's columns, rollups and retention, as the
    bootstrap job does (on Citus, with local-citus's shards)."""
    conn = connect(params)
    try:
        migrate(conn, load_migrations(), CITUS_SHARD_COUNT)
        for model in map(load_model, models):
            apply_model(conn, model)
            apply_rollups(conn, model)
            apply_retention(conn, model)
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
    params: ConnectionParams, prefix: str = "test", models: Iterable[str] = TEST_MODELS
) -> Iterator[ConnectionParams]:
    """A scratch database with every migration and `models` applied."""
    with scratch_database(params, prefix) as db:
        bootstrap(db, models)
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


def create_login(
    db: ConnectionParams, group: str | None, password: str | None = None
) -> ConnectionParams:
    """A new login role (in `group`, if given) with `password` (default a random one); its
    connection parameters.

    On Citus the coordinator connects to the workers as the same role: a cluster whose nodes
    check passwords (as the stack's does) learns the login's from `pg_dist_authinfo`.
    """
    login, password = f"test_login_{uuid.uuid4().hex[:8]}", password or uuid.uuid4().hex
    in_group = sql.SQL(" IN ROLE {}").format(sql.Identifier(group)) if group else sql.SQL("")
    statements: list[sql.Composable | str] = [
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}{}").format(
            sql.Identifier(login), sql.Literal(password), in_group
        )
    ]
    if citus_workers(db):
        statements.append(
            sql.SQL(
                "INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, {}, {})"
            ).format(sql.Literal(login), sql.Literal(libpq_conninfo({"password": password})))
        )
    execute(db, *statements)
    return replace(db, user=login, password=SecretStr(password))


def drop_login(db: ConnectionParams, login: ConnectionParams) -> None:
    statements: list[sql.Composable | str] = [
        sql.SQL("DROP ROLE {}").format(sql.Identifier(login.user or ""))
    ]
    if citus_workers(db):
        statements.append(
            sql.SQL("DELETE FROM pg_dist_authinfo WHERE rolename = {}").format(
                sql.Literal(login.user)
            )
        )
    execute(db, *statements)
