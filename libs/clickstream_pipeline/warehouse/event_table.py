"""The events table follows the event model: the bootstrap adds the columns a model names.

The migrations create `events` (the lab's columns, the ingest's own, `properties`). A model's
fields become columns of the same names and its SQL types; the bootstrap adds the missing ones
as nullable columns without a default, which rewrites nothing (PostgreSQL only records them in
the catalog; on Citus the change reaches every shard). Only additive changes are applied: a
field whose column has another type, a field left out of a model that had it (checked against
the last applied version of the same model, in `clickstream_event_models`), or another tenant
or time field than the table's is refused, naming the field and what to do. One table may hold
the fields of several models (each model's columns; the others' stay null in its rows).

Each model but the lab's (whose view is migration 0009's `bi_raw_events_last_day`) gets a BI
view of its columns over the last day, `bi_<model>_events_last_day`, readable by the dashboard
role; on Citus through a SECURITY DEFINER function, as 0009 explains.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection, cursor

from clickstream_pipeline.core.errors import DatabaseError
from clickstream_pipeline.core.fields import EVENTS_SCHEMA, EVENTS_TABLE
from clickstream_pipeline.core.model import EventModel
from clickstream_pipeline.warehouse.migrations import bootstrap_lock, on_citus

log = logging.getLogger(__name__)

MODELS_LEDGER = "clickstream_event_models"
READ_ONLY_ROLE = "clickstream_dashboard"  # sql/roles/dashboard_readonly.sql
LOCK_TIMEOUT = "5s"  # an ALTER waits this long for a running COPY, then tries again
LOCK_ATTEMPTS = 12


class ModelChangeError(DatabaseError):
    """The model asks for a change that would lose or rewrite data."""


@dataclass
class ModelPlan:
    """What applying a model to the events table takes."""

    model: EventModel
    added: list[str] = field(default_factory=list)  # the columns to add
    statements: list[sql.Composed] = field(default_factory=list)  # their ALTER TABLEs
    refused: list[str] = field(default_factory=list)  # why it cannot be applied
    recorded: bool = False  # this version is already in the ledger

    @property
    def changes(self) -> bool:
        return bool(self.statements) or not self.recorded


def model_columns(model: EventModel) -> dict[str, str]:
    """Each column the model names -> its SQL type, as `format_type` writes it."""
    columns = {name: spec.sql_type for name, spec in model.fields.items() if name != model.id}
    if model.id is not None:
        columns["source_event_id"] = "bigint"
    columns[model.time.field] = "timestamp with time zone"
    return columns


def _ledger(cur: cursor) -> None:
    cur.execute(
        sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                table_name text NOT NULL,
                model_name text NOT NULL,
                columns jsonb NOT NULL,
                tenant text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (table_name, model_name))"""
        ).format(sql.Identifier(EVENTS_SCHEMA, MODELS_LEDGER))
    )


def _live_columns(cur: cursor, table: str) -> dict[str, str]:
    cur.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        (table,),
    )
    return dict(cur.fetchall())


def _layout(cur: cursor, table: str) -> tuple[str | None, str | None]:
    """The table's distribution column on Citus (None elsewhere) and its partition key."""
    cur.execute(
        "SELECT a.attname FROM pg_partitioned_table p JOIN pg_attribute a "
        "ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
        "WHERE p.partrelid = to_regclass(%s)",
        (table,),
    )
    row = cur.fetchone()
    partition_key = row[0] if row else None
    cur.execute("SELECT to_regclass('pg_dist_partition') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None, partition_key
    cur.execute(
        "SELECT column_to_column_name(logicalrelid, partkey) FROM pg_dist_partition "
        "WHERE logicalrelid = to_regclass(%s)",
        (table,),
    )
    row = cur.fetchone()
    return (row[0] if row else None), partition_key


def plan_model(conn: connection, model: EventModel) -> ModelPlan:
    """What applying `model` would change (nothing is changed)."""
    table = f"{EVENTS_SCHEMA}.{EVENTS_TABLE}"
    plan = ModelPlan(model)
    wanted = model_columns(model)
    with conn.cursor() as cur:
        live = _live_columns(cur, table)
        if not live:
            raise DatabaseError(f"{table} does not exist: the migrations create it")
        distributed_by, partition_key = _layout(cur, table)
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{EVENTS_SCHEMA}.{MODELS_LEDGER}",))
        previous = None
        if cur.fetchone()[0]:
            cur.execute(
                sql.SQL(
                    "SELECT columns, tenant FROM {} WHERE table_name = %s AND model_name = %s"
                ).format(sql.Identifier(EVENTS_SCHEMA, MODELS_LEDGER)),
                (table, model.name),
            )
            previous = cur.fetchone()
    if distributed_by is not None and model.tenant != distributed_by:
        plan.refused.append(
            f"tenant {model.tenant!r}: {table} is distributed by {distributed_by!r}; "
            f"name the tenant field {distributed_by!r} in the model (Citus cannot change a "
            "table's distribution column in place)"
        )
    if partition_key is not None and model.time.field != partition_key:
        plan.refused.append(
            f"time field {model.time.field!r}: {table} is partitioned by {partition_key!r}; "
            f"name the time field {partition_key!r} in the model"
        )
    if previous is not None:
        before, tenant = previous
        if tenant != model.tenant:
            plan.refused.append(
                f"tenant {model.tenant!r}: model {model.name!r} was applied with tenant "
                f"{tenant!r}; another tenant field needs a new table"
            )
        added = [c for c in wanted if c not in before]
        for name in before:
            if name not in wanted:
                renamed = [c for c in added if wanted[c] == before[name]]
                hint = f" (renamed to {renamed[0]!r}?)" if renamed else ""
                plan.refused.append(
                    f"field {name!r}{hint} was in model {model.name!r} when it was last applied "
                    "and is not now: dropping it would lose its column's values; keep the "
                    "field (optional: `required = false`) and stop sending it, or remove the "
                    "column yourself and then the field"
                )
        plan.recorded = before == wanted and tenant == model.tenant
    for name, sql_type in wanted.items():
        if name not in live:
            plan.added.append(name)
            plan.statements.append(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    sql.Identifier(EVENTS_SCHEMA, EVENTS_TABLE),
                    sql.Identifier(name),
                    sql.SQL(sql_type),
                )
            )
        elif live[name] != sql_type:
            plan.refused.append(
                f"field {name!r}: {table}.{name} is {live[name]}, the model says {sql_type}; "
                "a type change rewrites the table: give the field a new name (a new column) "
                "or keep the column's type"
            )
    return plan


def apply_model(conn: connection, model: EventModel) -> ModelPlan:
    """Add the columns `model` names to the events table and record the model, in one
    transaction; a change that would lose or rewrite data raises ModelChangeError."""
    with bootstrap_lock(conn):
        for attempt in range(1, LOCK_ATTEMPTS + 1):
            plan = plan_model(conn, model)
            conn.rollback()
            if plan.refused:
                raise ModelChangeError(
                    f"event model {model.name!r} cannot be applied to "
                    f"{EVENTS_SCHEMA}.{EVENTS_TABLE}: " + "; ".join(plan.refused)
                )
            if not plan.changes:
                return plan
            try:
                _apply(conn, plan)
                return plan
            except psycopg2.errors.LockNotAvailable:
                conn.rollback()
                log.info("events is busy (attempt %d of %d): trying again", attempt, LOCK_ATTEMPTS)
                time.sleep(min(attempt, 5))
        raise DatabaseError(
            f"could not lock {EVENTS_SCHEMA}.{EVENTS_TABLE} in {LOCK_ATTEMPTS} attempts of "
            f"{LOCK_TIMEOUT}: a long transaction holds it"
        )


def bi_view_name(model: EventModel) -> str | None:
    """The model's BI view of raw events (None for the lab's: migration 0009 makes it)."""
    return None if model.name == "lab" else f"bi_{model.name}_events_last_day"


def make_bi_view(cur: cursor, model: EventModel) -> None:
    """The model's BI view over the last day of events, made again with its columns."""
    name = bi_view_name(model)
    if name is None:
        return
    columns = [(c, t) for c, t in model_columns(model).items() if c != "source_event_id"]
    if model.unknown_fields == "keep":
        columns.append(("properties", "jsonb"))
    rows = sql.SQL("SELECT {} FROM {} WHERE {} >= now() - interval '1 day'").format(
        sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns),
        sql.Identifier(EVENTS_SCHEMA, EVENTS_TABLE),
        sql.Identifier(model.time.field),
    )
    view = sql.Identifier(EVENTS_SCHEMA, name)
    function = sql.Identifier(EVENTS_SCHEMA, f"{name}_rows")
    cur.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view))
    cur.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(function))
    distributed = on_citus(cur)
    if distributed:  # shard queries run as the caller: read through a definer's function
        returns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns
        )
        cur.execute(
            sql.SQL(
                "CREATE FUNCTION {}() RETURNS TABLE ({}) LANGUAGE sql STABLE SECURITY DEFINER "
                "SET search_path = public AS {}"
            ).format(function, returns, sql.Literal(rows.as_string(cur)))
        )
        cur.execute(sql.SQL("REVOKE ALL ON FUNCTION {}() FROM PUBLIC").format(function))
        rows = sql.SQL("SELECT * FROM {}()").format(function)
    cur.execute(sql.SQL("CREATE VIEW {} AS {}").format(view, rows))
    cur.execute(
        sql.SQL("COMMENT ON VIEW {} IS {}").format(
            view,
            sql.Literal(
                f"READS RAW EVENTS: the columns of event model {model.name!r} over the last 24 "
                "hours, one row per event (rows of other models too, their columns NULL). Every "
                "query scans events partitions; filter on the time and prefer the rollup views."
            ),
        )
    )
    cur.execute("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)", (READ_ONLY_ROLE,))
    if cur.fetchone()[0]:
        role = sql.Identifier(READ_ONLY_ROLE)
        cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(view, role))
        if distributed:
            cur.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {}() TO {}").format(function, role))


def _apply(conn: connection, plan: ModelPlan) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
        if on_citus(cur):  # DDL and a function in one transaction (as the migrations do)
            cur.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
        _ledger(cur)
        for statement in plan.statements:
            cur.execute(statement)
        make_bi_view(cur, plan.model)
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (table_name, model_name, columns, tenant) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (table_name, model_name) DO UPDATE SET columns = EXCLUDED.columns, "
                "tenant = EXCLUDED.tenant, applied_at = now()"
            ).format(sql.Identifier(EVENTS_SCHEMA, MODELS_LEDGER)),
            (
                f"{EVENTS_SCHEMA}.{EVENTS_TABLE}",
                plan.model.name,
                json.dumps(model_columns(plan.model)),
                plan.model.tenant,
            ),
        )
    conn.commit()
    for statement in plan.statements:
        log.info("event model %s: %s", plan.model.name, statement.as_string(conn))


def dry_run_lines(conn: connection, plan: ModelPlan) -> list[str]:
    """The SQL `apply_model` would run, or why it would refuse."""
    head = f"-- event model {plan.model.name!r}"
    if plan.refused:
        return [f"{head}: refused", *(f"--   {why}" for why in plan.refused)]
    if not plan.changes:
        return [f"{head}: the events table has its columns already"]
    view = bi_view_name(plan.model)
    return [
        f"{head}: {len(plan.statements)} column(s) to add, recorded in {MODELS_LEDGER}"
        + (f"; its BI view {view} made again" if view else ""),
        *(s.as_string(conn) + ";" for s in plan.statements),
    ]
