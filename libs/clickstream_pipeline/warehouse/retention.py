"""Retention: how long each table keeps its rows, from the event model's `[retention]`.

The bootstrap writes each horizon into `clickstream_retention` (migration 0015) and, for raw
events, into pg_partman's `part_config` (whose maintenance drops whole partitions);
`clickstream_apply_retention()`, scheduled hourly by pg_cron, deletes the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from psycopg2.extensions import connection

from clickstream_pipeline.core.errors import ConfigError
from clickstream_pipeline.core.model import EventModel, RetentionSpec
from clickstream_pipeline.warehouse.migrations import bootstrap_lock

SET_KEEP = "UPDATE public.clickstream_retention SET keep = %s::interval WHERE table_name = %s"
SET_PARTITION_RETENTION = (
    "UPDATE partman.part_config SET retention = %s, retention_keep_table = false "
    "WHERE parent_table = 'public.events'"
)


class RetentionError(ConfigError):
    """The model's `[retention]` names a table the database does not have."""


@dataclass(frozen=True)
class RetentionPlan:
    """What each table will keep: (table, kind, horizon or None for every row)."""

    tables: tuple[tuple[str, str, str | None], ...]

    def lines(self) -> list[str]:
        """One line per kind of table: its horizon, or each table's where they differ."""
        out = []
        for kind in ("events", "rollup", "bookkeeping"):
            tables = [(table, keep or "all") for table, k, keep in self.tables if k == kind]
            horizons = {keep for _, keep in tables}
            kept = (
                horizons.pop() if len(horizons) == 1 else ", ".join(f"{t} {k}" for t, k in tables)
            )
            out.append(f"retention of {kind} tables: {kept}")
        return out

    def statements(self) -> list[tuple[str, tuple[str | None, ...]]]:
        """The statements that set it, with their parameters."""
        out: list[tuple[str, tuple[str | None, ...]]] = []
        for table, kind, keep in self.tables:
            interval = keep and as_interval(keep)
            out.append((SET_KEEP, (interval, table)))
            if kind == "events":
                out.append((SET_PARTITION_RETENTION, (interval,)))
        return out


def as_interval(keep: str) -> str:
    """`30d` as PostgreSQL reads an interval: `30 days`."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    return f"{keep[:-1]} {units[keep[-1]]}"


def plan_retention(
    conn: connection, spec: RetentionSpec, new_rollups: Iterable[str] = ()
) -> RetentionPlan:
    """Each table of `clickstream_retention` (and `new_rollups`, which a dry run has not made)
    with the horizon `spec` gives it; RetentionError names a rollup `spec` gives a horizon that
    the database does not have."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name, kind FROM public.clickstream_retention ORDER BY kind, table_name"
        )
        known = cur.fetchall()
    known += [(table, "rollup") for table in new_rollups if (table, "rollup") not in known]
    rollups = {table for table, kind in known if kind == "rollup"}
    unknown = sorted(set(spec.rollup) - rollups)
    if unknown:
        raise RetentionError(
            f"retention.rollup.{unknown[0]}: no such rollup table "
            f"(known: {', '.join(sorted(rollups))})"
        )
    horizons = {"events": spec.events, "bookkeeping": spec.bookkeeping}
    return RetentionPlan(
        tuple(
            (table, kind, spec.rollup_keep(table) if kind == "rollup" else horizons[kind])
            for table, kind in known
        )
    )


def apply_retention(conn: connection, model: EventModel) -> RetentionPlan:
    """Write `model`'s horizons into `clickstream_retention` and pg_partman's configuration of
    `events`, in one transaction."""
    with bootstrap_lock(conn):
        plan = plan_retention(conn, model.retention)
        with conn.cursor() as cur:
            for statement, params in plan.statements():
                cur.execute(statement, params)
        conn.commit()
    return plan


def dry_run_statements(conn: connection, plan: RetentionPlan) -> list[str]:
    """The SQL `apply_retention` would run for `plan`, as text."""
    with conn.cursor() as cur:
        return [cur.mogrify(q, p).decode() + ";" for q, p in plan.statements()]
