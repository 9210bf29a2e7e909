"""Rollups generated from the event model's `[rollups.<table>]`.

For each rollup: its table (distributed on the tenant and colocated with `events` on Citus when
the tenant is a dimension, else a local table; a unique index on its key, the tenant first), its
incremental function (the lab's window over event ids, `incremental_rollup_window`, with the
single-event fast path of migration 0010 where asked), its rows in the registry (`rollups`: the
window and the function to call; `clickstream_rollup_tables`: the definition), its pg_cron job,
its BI view, its grants to the read-only role and its row in `clickstream_retention`.

A new rollup on a database that already holds events is backfilled from them in bounded
windows (`rollups.max_window_ids`), each its own transaction, while ingest goes on; the
windows of the incremental runs take over from there, so every event is counted once. A rollup
the model no longer names is kept unless the bootstrap is told to drop it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from psycopg2.extensions import connection, cursor

from clickstream_pipeline.core.errors import ConfigError
from clickstream_pipeline.core.model import EventModel
from clickstream_pipeline.core.rollup_spec import MeasureSpec, RollupSpec
from clickstream_pipeline.warehouse.event_table import EVENTS_SCHEMA, EVENTS_TABLE, READ_ONLY_ROLE
from clickstream_pipeline.warehouse.migrations import bootstrap_lock, on_citus

log = logging.getLogger(__name__)

REGISTRY = "public.clickstream_rollup_tables"
REGISTERED_FUNCTIONS = (
    "SELECT function_name FROM public.rollups WHERE function_name IS NOT NULL "
    "ORDER BY run_order, name"
)
BACKFILL_CHUNK = 500_000  # event ids per backfill window
EVENTS = f"{EVENTS_SCHEMA}.{EVENTS_TABLE}"
SEQUENCE = f"{EVENTS_TABLE}_event_id_seq"


class RollupChangeError(ConfigError):
    """A rollup in the model cannot be applied to the database as it is."""


def q(name: str) -> str:
    """A quoted identifier (the model's names are checked, and quoted all the same)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class RollupFunction:
    """One function: the rollups it fills, its window of event ids and its schedule."""

    name: str
    window: str
    schedule: str
    tables: tuple[tuple[str, RollupSpec], ...]

    @property
    def source(self) -> str:
        """`events`, or the rollup its tables are computed from (one per function)."""
        return self.tables[0][1].source

    @property
    def run_order(self) -> int:
        # finest first; a rollup of a rollup after its source, whatever their grains
        return min(spec.granularity_s for _, spec in self.tables) + (self.source != "events")


def functions(model: EventModel) -> list[RollupFunction]:
    """The model's rollups grouped by the function that fills them, in the model's order."""
    grouped: dict[str, list[tuple[str, RollupSpec]]] = {}
    for table, spec in model.rollups.items():
        grouped.setdefault(spec.function_name(table), []).append((table, spec))
    return [
        RollupFunction(
            name, tables[0][1].window_name(tables[0][0]), tables[0][1].schedule, tuple(tables)
        )
        for name, tables in grouped.items()
    ]


# SQL ----------------------------------------------------------------------------------------


def bucket_sql(spec: RollupSpec, time_column: str, alias: str = "") -> str:
    """The start of an event's bucket (the lab's epoch arithmetic, or date_trunc for 1m/1h/1d)."""
    t, seconds = alias + q(time_column), spec.granularity_s
    unit = {60: "minute", 3600: "hour", 86400: "day"}.get(seconds)
    if unit:
        return f"date_trunc('{unit}', {t})"
    return (
        f"date_trunc('seconds', ({t} - TIMESTAMP 'epoch') / {seconds}) * {seconds} "
        "+ TIMESTAMP 'epoch'"
    )


def measure_type(measure: MeasureSpec, model: EventModel) -> str:
    if measure.kind == "count":
        return "bigint"
    if measure.kind == "distinct":
        return "hll"
    if measure.kind == "topn":
        return "jsonb"
    assert measure.field is not None
    kind = model.fields[measure.field].type
    if measure.kind == "sum":
        return {"integer": "bigint", "double": "double precision"}.get(kind, "numeric")
    return model.fields[measure.field].sql_type


def _aggregate(measure: MeasureSpec, model: EventModel, fast: bool) -> str:
    if measure.kind == "count":
        return "count(*)"
    assert measure.field is not None
    f = q(measure.field)
    if measure.kind in ("sum", "min", "max"):
        return f"{measure.kind}({f})"
    if measure.kind == "distinct":
        hashed = f"hll_hash_{model.fields[measure.field].type}"
        whole = f"hll_add_agg({hashed}({f}), {measure.precision})"
        one = f"hll_add(hll_empty({measure.precision}), {hashed}(min({f})))"
    else:
        whole = f"topn_add_agg({f}::text)"
        one = f"jsonb_build_object(min({f})::text, 1)"
    if not fast:
        return whole
    # a group of one event: the scalar equal, byte for byte, of the aggregate (migration 0010)
    return (
        f"CASE WHEN count(*) = 1 AND min({f}) IS NOT NULL THEN {one} "
        f"ELSE {whole} FILTER (WHERE _group_size > 1 OR {f} IS NULL) END"
    )


def _merge(name: str, measure: MeasureSpec) -> str:
    c = q(name)
    both = f"t.{c}, excluded.{c}"
    merged = {
        "count": f"t.{c} + excluded.{c}",
        "sum": f"coalesce(t.{c} + excluded.{c}, {both})",
        "min": f"least({both})",
        "max": f"greatest({both})",
        "distinct": f"hll_union({both})",
        "topn": f"topn_union({both})",
    }[measure.kind]
    return f"{c} = {merged}"


_NEXT_ITEM = ",\n           "


def insert_sql(table: str, spec: RollupSpec, model: EventModel) -> str:
    """The INSERT ... SELECT ... ON CONFLICT that merges the events of ids start_id..end_id."""
    dims = [q(d) for d in spec.dimensions]
    key = ", ".join([*dims, q(spec.bucket)])
    bucket = bucket_sql(spec, model.time.field)
    window = f"{EVENTS} WHERE event_id BETWEEN start_id AND end_id"
    fast = spec.single_event_groups and any(
        m.kind in ("distinct", "topn") for m in spec.measures.values()
    )
    aggregates = [f"{_aggregate(m, model, fast)} AS {q(name)}" for name, m in spec.measures.items()]
    if fast:
        read = [q(f) for f in dict.fromkeys(m.field for m in spec.measures.values() if m.field)]
        partition = ", ".join([*dims, bucket])
        source = (
            f"(SELECT {', '.join(dict.fromkeys([*dims, *read]))}, {bucket} AS {q(spec.bucket)},\n"
            f"                 count(*) OVER (PARTITION BY {partition}) AS _group_size\n"
            f"          FROM {window}) AS e"
        )
        select = [*dims, q(spec.bucket), *aggregates]
    else:
        source = window
        select = [*dims, f"{bucket} AS {q(spec.bucket)}", *aggregates]
    columns = ", ".join(q(c) for c in spec.columns())
    merges = ",\n        ".join(_merge(name, m) for name, m in spec.measures.items())
    return (
        f"INSERT INTO public.{q(table)} AS t ({columns})\n"
        f"    SELECT {_NEXT_ITEM.join(select)}\n"
        f"    FROM {source}\n"
        f"    GROUP BY {key}\n"
        f"    ON CONFLICT ({key}) DO UPDATE\n"
        f"    SET {merges}"
    )


def _merged(measure: MeasureSpec, column: str, model: EventModel) -> str:
    """A coarser bucket's value of `measure` from its source's rows (`s.column`)."""
    c = f"s.{q(column)}"
    return {
        "count": f"sum({c})::bigint",
        "sum": f"sum({c})::{measure_type(measure, model)}",
        "min": f"min({c})",
        "max": f"max({c})",
        "distinct": f"hll_union_agg({c})",
        "topn": f"topn_union_agg({c})",
    }[measure.kind]


def rebuild_sql(table: str, spec: RollupSpec, model: EventModel, touched: bool) -> str:
    """A rollup of a rollup: the INSERT ... SELECT ... ON CONFLICT that recomputes its buckets
    from the source's rows, those the events of ids start_id..end_id fall in (`touched`), or
    all of them; each bucket is replaced whole, so a bucket recomputed twice is still right."""
    source = model.rollups[spec.source]
    dims = [q(d) for d in spec.dimensions]
    key = ", ".join([*dims, q(spec.bucket)])
    bucket = bucket_sql(spec, source.bucket, "s.")
    measures = [
        f"{_merged(m, source.source_column(m) or name, model)} AS {q(name)}"
        for name, m in spec.measures.items()
    ]
    select = [*(f"s.{d}" for d in dims), f"{bucket} AS {q(spec.bucket)}", *measures]
    columns = ", ".join(q(c) for c in spec.columns())
    reading = f"public.{q(spec.source)} AS s"
    if touched:
        # the keys of the events in the window; the tenant's equality keeps it on the shards
        keys = ", ".join([*dims, f"{bucket_sql(spec, model.time.field)} AS _bucket"])
        joined = " AND ".join(
            [
                *(
                    f"s.{d} = k.{d}"
                    if name == model.tenant
                    else f"s.{d} IS NOT DISTINCT FROM k.{d}"
                    for name, d in zip(spec.dimensions, dims, strict=True)
                ),
                f"s.{q(source.bucket)} >= k._bucket",
                f"s.{q(source.bucket)} < k._bucket + interval '{spec.granularity_s} seconds'",
            ]
        )
        reading += (
            f"\n    JOIN (SELECT DISTINCT {keys}\n"
            f"          FROM {EVENTS} WHERE event_id BETWEEN start_id AND end_id) AS k\n"
            f"      ON {joined}"
        )
    replaced = ",\n        ".join(f"{q(n)} = excluded.{q(n)}" for n in spec.measures)
    return (
        f"INSERT INTO public.{q(table)} AS t ({columns})\n"
        f"    SELECT {_NEXT_ITEM.join(select)}\n"
        f"    FROM {reading}\n"
        f"    GROUP BY {', '.join([*(f's.{d}' for d in dims), bucket])}\n"
        f"    ON CONFLICT ({key}) DO UPDATE\n"
        f"    SET {replaced}"
    )


def function_sql(function: RollupFunction, model: EventModel) -> str:
    if function.source != "events":
        return _rebuild_function_sql(function, model)
    inserts = "".join(
        f"\n    {insert_sql(table, spec, model)};\n" for table, spec in function.tables
    )
    return (
        f"CREATE OR REPLACE FUNCTION public.{q(function.name)}"
        "(OUT start_id bigint, OUT end_id bigint)\n"
        "RETURNS record\nLANGUAGE plpgsql\nAS $function$\nBEGIN\n"
        "    -- the next window of committed event ids; its rollups row stays locked until commit\n"
        "    SELECT window_start, window_end INTO start_id, end_id\n"
        f"    FROM incremental_rollup_window('{function.window}');\n"
        "    IF start_id > end_id THEN RETURN; END IF;\n"
        f"{inserts}END;\n$function$"
    )


def _rebuild_function_sql(function: RollupFunction, model: EventModel) -> str:
    """A rollup of a rollup's function: its window follows its source's (never past the events
    the source has aggregated, nothing while the source is backfilled); its own backfill
    (max_window_ids set) recomputes every bucket."""
    source_window = model.rollups[function.source].window_name(function.source)
    every = "".join(
        f"\n        {rebuild_sql(t, spec, model, touched=False)};" for t, spec in function.tables
    )
    touched = "".join(
        f"\n            {rebuild_sql(t, spec, model, touched=True)};" for t, spec in function.tables
    )
    return (
        f"CREATE OR REPLACE FUNCTION public.{q(function.name)}"
        "(OUT start_id bigint, OUT end_id bigint)\n"
        "RETURNS record\nLANGUAGE plpgsql\nAS $function$\n"
        "DECLARE\n    source_end bigint;\n    source_backfilling boolean;\n"
        "    backfilling boolean;\nBEGIN\n"
        "    SELECT window_start, window_end INTO start_id, end_id\n"
        f"    FROM incremental_rollup_window('{function.window}');\n"
        "    SELECT last_aggregated_id, max_window_ids IS NOT NULL INTO source_end, "
        "source_backfilling\n"
        f"    FROM public.rollups WHERE name = '{source_window}';\n"
        "    SELECT max_window_ids IS NOT NULL INTO backfilling\n"
        f"    FROM public.rollups WHERE name = '{function.window}';\n"
        "    IF source_backfilling THEN\n"
        "        end_id := start_id - 1;\n"
        "    ELSIF backfilling THEN\n"
        "        end_id := greatest(start_id - 1, source_end);"
        f"{every}\n"
        "    ELSE\n"
        "        end_id := greatest(start_id - 1, least(end_id, source_end));\n"
        f"        IF start_id <= end_id THEN{touched}\n        END IF;\n"
        "    END IF;\n"
        "    UPDATE public.rollups SET last_aggregated_id = end_id,\n"
        "        max_window_ids = CASE WHEN source_backfilling THEN max_window_ids END\n"
        f"    WHERE name = '{function.window}';\n"
        "END;\n$function$"
    )


def table_sql(table: str, spec: RollupSpec, model: EventModel) -> list[str]:
    columns = [
        *(f"{q(d)} {model.fields[d].sql_type}" for d in spec.dimensions),
        f"{q(spec.bucket)} timestamptz",
        *(f"{q(n)} {measure_type(m, model)}" for n, m in spec.measures.items()),
    ]
    key = ", ".join(q(c) for c in (*spec.dimensions, spec.bucket))
    comment = spec.description or (
        f"Events per {spec.granularity} bucket ({spec.bucket} = its start)"
        + (f" and {', '.join(spec.dimensions)}" if spec.dimensions else "")
        + f": {', '.join(spec.measures)}; filled by {spec.function_name(table)}()."
    )
    return [
        f"CREATE TABLE IF NOT EXISTS public.{q(table)} (\n    " + ",\n    ".join(columns) + "\n)",
        f"CREATE UNIQUE INDEX IF NOT EXISTS {q(table + '_unique_idx')} "
        f"ON public.{q(table)} ({key})",
        f"COMMENT ON TABLE public.{q(table)} IS {_literal(comment)}",
    ]


def view_sql(table: str, spec: RollupSpec) -> str:
    shown = [f"{q(spec.bucket)} AS bucket_start", *(q(d) for d in spec.dimensions)]
    for name, m in spec.measures.items():
        label = q(m.label or name)
        if m.kind == "distinct":
            shown.append(f"round(hll_cardinality({q(name)}))::bigint AS {label}")
        elif m.kind != "topn":
            shown.append(f"{q(name)} AS {label}")
    return (
        f"CREATE OR REPLACE VIEW public.{q(spec.view_name(table))} AS\n"
        f"SELECT {', '.join(shown)}\nFROM public.{q(table)}"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def definition(spec: RollupSpec, model: EventModel) -> dict[str, object]:
    """What the table was generated from: its spec and the model's time field."""
    return {"spec": spec.model_dump(mode="json"), "time": model.time.field}


# Plan and apply ---------------------------------------------------------------------------


@dataclass
class RollupPlan:
    """What the bootstrap does to the rollups: new, changed and unchanged tables, tables the
    model no longer names, refusals."""

    model: EventModel
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    backfilled: dict[str, tuple[int, int]] = field(default_factory=dict)  # window: ids, chunks

    @property
    def generated(self) -> list[RollupFunction]:
        """The functions to generate again: those with a new or changed table."""
        touched = {*self.new, *self.changed}
        return [f for f in functions(self.model) if any(t in touched for t, _ in f.tables)]

    def lines(self, dropped: bool = False) -> list[str]:
        out = []
        for label, tables in (("new", self.new), ("generated", self.changed)):
            if tables:
                out.append(f"rollups {label}: {', '.join(tables)}")
        if self.unchanged:
            out.append(f"rollups unchanged: {len(self.unchanged)}")
        for window, (ids, chunks) in self.backfilled.items():
            out.append(f"rollups backfilled: {window} from {ids:,} event ids in {chunks} window(s)")
        if self.removed:
            out.append(
                f"rollups {'dropped' if dropped else 'kept'} (no longer in the model): "
                + ", ".join(self.removed)
                + ("" if dropped else "; --drop-removed-rollups drops them")
            )
        return out


@dataclass(frozen=True)
class _Registered:
    window: str
    function: str
    view: str | None
    definition: dict | None


def _registry(cur: cursor) -> dict[str, _Registered]:
    cur.execute(
        f"SELECT table_name, window_name, function_name, view_name, definition FROM {REGISTRY}"
    )
    return {row[0]: _Registered(*row[1:]) for row in cur.fetchall()}


def _live_columns(cur: cursor, table: str) -> list[str]:
    cur.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum",
        (f"public.{q(table)}",),
    )
    return [row[0] for row in cur.fetchall()]


def plan_rollups(conn: connection, model: EventModel) -> RollupPlan:
    """Compare the model's rollups with the registry and the live tables."""
    plan = RollupPlan(model)
    with conn.cursor() as cur:
        known = _registry(cur)
        cur.execute("SELECT name, last_aggregated_id FROM public.rollups")
        windows = dict(cur.fetchall())
        for table, spec in model.rollups.items():
            wanted = definition(spec, model)
            live = _live_columns(cur, table)
            if table not in known and live:
                plan.refused.append(
                    f"rollups.{table}: a table {table} exists and is not a rollup; "
                    "give the rollup another name"
                )
            elif not live:
                if windows.get(spec.window_name(table)):
                    plan.refused.append(
                        f"rollups.{table}: window {spec.window_name(table)!r} has aggregated "
                        "events already; a new rollup needs a window of its own to be backfilled"
                    )
                else:
                    plan.new.append(table)
            elif set(live) != set(spec.columns()):
                plan.refused.append(
                    f"rollups.{table}: its columns would change ({', '.join(live)} -> "
                    f"{', '.join(spec.columns())}); give the new rollup another name, and drop "
                    "this one with --drop-removed-rollups once the model no longer names it"
                )
            elif known[table].definition != wanted:
                plan.changed.append(table)
            else:
                plan.unchanged.append(table)
        plan.removed = sorted(set(known) - set(model.rollups))
    conn.rollback()
    return plan


def statements(plan: RollupPlan, citus: bool) -> Iterator[str]:
    """The SQL that generates the plan's new and changed rollups."""
    model = plan.model
    for function in plan.generated:
        for table, spec in function.tables:
            if table in plan.new:
                yield from table_sql(table, spec, model)
                if citus and model.tenant in spec.dimensions:
                    yield (
                        f"SELECT create_distributed_table('public.{q(table)}', "
                        f"{_literal(model.tenant)}, colocate_with => '{EVENTS}')"
                    )
        yield function_sql(function, model)
        yield (
            "INSERT INTO public.rollups (name, event_table_name, event_id_sequence_name, "
            "function_name, run_order, last_aggregated_id, max_window_ids) "
            f"VALUES ({_literal(function.window)}, 'events', '{SEQUENCE}', "
            f"{_literal(function.name)}, {function.run_order}, 0, NULL) "
            "ON CONFLICT (name) DO UPDATE SET function_name = excluded.function_name, "
            "run_order = excluded.run_order"
        )
        for table, spec in function.tables:
            yield view_sql(table, spec)
            yield (
                f"COMMENT ON VIEW public.{q(spec.view_name(table))} IS "
                + _literal(
                    f"Per {spec.granularity} bucket"
                    + "".join(f", {d}" for d in spec.dimensions)
                    + ": the measures of rollup "
                    + f"{table} (distinct counts as HLL estimates, not additive across rows)."
                )
            )
            yield (
                f"INSERT INTO {REGISTRY} (table_name, window_name, function_name, view_name, "
                f"definition, generated_at) VALUES ({_literal(table)}, "
                f"{_literal(function.window)}, {_literal(function.name)}, "
                f"{_literal(spec.view_name(table))}, "
                f"{_literal(json.dumps(definition(spec, model)))}::jsonb, now()) "
                "ON CONFLICT (table_name) DO UPDATE SET window_name = excluded.window_name, "
                "function_name = excluded.function_name, view_name = excluded.view_name, "
                "definition = excluded.definition, generated_at = excluded.generated_at"
            )
            yield (
                "INSERT INTO public.clickstream_retention (table_name, kind, time_column) "
                f"VALUES ({_literal(table)}, 'rollup', {_literal(spec.bucket)}) "
                "ON CONFLICT (table_name) DO UPDATE SET time_column = excluded.time_column"
            )
            yield _grant(f"public.{q(table)}, public.{q(spec.view_name(table))}")
        yield (
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN "
            f"PERFORM cron.schedule({_literal(function.name)}, {_literal(function.schedule)}, "
            f"{_literal(f'SELECT {q(function.name)}();')}); END IF; END $$"
        )


def _grant(objects: str) -> str:
    return (
        f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READ_ONLY_ROLE}') THEN "
        f"GRANT SELECT ON {objects} TO {q(READ_ONLY_ROLE)}; END IF; END $$"
    )


def drop_statements(conn: connection, plan: RollupPlan) -> Iterator[str]:
    """The SQL that drops the rollups the model no longer names (their function, window and
    schedule too once no rollup uses them)."""
    with conn.cursor() as cur:
        known = _registry(cur)
    kept_functions = {r.function for t, r in known.items() if t not in plan.removed}
    for table in plan.removed:
        window, function = known[table].window, known[table].function
        if view := known[table].view:
            yield f"DROP VIEW IF EXISTS public.{q(view)}"
        yield f"DROP TABLE IF EXISTS public.{q(table)}"
        yield f"DELETE FROM {REGISTRY} WHERE table_name = {_literal(table)}"
        yield f"DELETE FROM public.clickstream_retention WHERE table_name = {_literal(table)}"
        if function not in kept_functions:
            kept_functions.add(function)  # once
            yield f"DROP FUNCTION IF EXISTS public.{q(function)}()"
            yield f"DELETE FROM public.rollups WHERE name = {_literal(window)}"
            yield (
                "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') "
                "THEN PERFORM cron.unschedule(jobid) FROM cron.job "
                f"WHERE jobname = {_literal(function)}; END IF; END $$"
            )


def apply_rollups(
    conn: connection,
    model: EventModel,
    drop_removed: bool = False,
    chunk: int = BACKFILL_CHUNK,
    say: Callable[[str], None] = log.info,
) -> RollupPlan:
    """Generate the model's new and changed rollups in one transaction, drop the removed ones if
    told to, then backfill each new window from the events already kept."""
    with bootstrap_lock(conn):
        plan = plan_rollups(conn, model)
        if plan.refused:
            raise RollupChangeError("; ".join(plan.refused))
        if drop_removed:  # a function that filled a dropped table too is generated again
            with conn.cursor() as cur:
                known = _registry(cur)
            emptied = {known[t].function for t in plan.removed}
            for table in list(plan.unchanged):
                if model.rollups[table].function_name(table) in emptied:
                    plan.unchanged.remove(table)
                    plan.changed.append(table)
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('search_path', 'public', true)")
            citus = on_citus(cur)
            if citus:
                cur.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
            drops = list(drop_statements(conn, plan)) if drop_removed else []
            for statement in [*statements(plan, citus), *drops]:
                cur.execute(statement)
            for function in plan.generated:
                if any(t in plan.new for t, _ in function.tables):
                    _start_backfill(cur, function, chunk)
            cur.execute(
                "SELECT name FROM public.rollups WHERE max_window_ids IS NOT NULL "
                "ORDER BY run_order, name"  # a source before the rollups read from it
            )
            unfinished = [row[0] for row in cur.fetchall()]  # an interrupted one too
        conn.commit()
    for window in unfinished:
        plan.backfilled[window] = backfill(conn, window, say)
    return plan


def _start_backfill(cur: cursor, function: RollupFunction, chunk: int) -> None:
    """A new window starts before the oldest event kept, in bounded steps; a rollup of a
    rollup's is marked, and its first run recomputes every bucket of its source."""
    if function.source != "events":
        cur.execute(
            "UPDATE public.rollups SET max_window_ids = %s WHERE name = %s",
            (chunk, function.window),
        )
        return
    cur.execute(f"SELECT min(event_id) FROM {EVENTS}")
    oldest = cur.fetchone()[0]
    if oldest is None:
        return
    cur.execute(
        "UPDATE public.rollups SET last_aggregated_id = %s, max_window_ids = %s WHERE name = %s",
        (oldest - 1, chunk, function.window),
    )


def backfill(conn: connection, window: str, say: Callable[[str], None]) -> tuple[int, int]:
    """Run the window's function, each run a transaction, until it has passed the events that
    were kept when it started; then lift the bound. (event ids covered, runs)."""
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute(
            "SELECT function_name, max_window_ids, last_aggregated_id, "
            f"pg_sequence_last_value('{EVENTS_SCHEMA}.{SEQUENCE}') "
            "FROM public.rollups WHERE name = %s",
            (window,),
        )
        function, bound, first, target = cur.fetchone()
    conn.commit()
    if bound is None or target is None:
        return 0, 0
    runs, started = 0, time.monotonic()
    end = first
    while end < target and bound is not None:
        before = end
        with conn.cursor() as cur:
            cur.execute(f"SELECT start_id, end_id FROM public.{q(function)}()")
            _, end = cur.fetchone()
            # a rollup of a rollup's function ends its own backfill in one run
            cur.execute("SELECT max_window_ids FROM public.rollups WHERE name = %s", (window,))
            bound = cur.fetchone()[0]
        conn.commit()
        runs += 1
        rate = (end - first) / max(time.monotonic() - started, 1e-9)
        if bound is None:
            say(f"backfill {window}: every bucket of its source, to event id {end:,}")
        else:
            say(
                f"backfill {window}: event ids to {end:,} of {target:,} "
                f"({(end - first) / max(target - first, 1):.0%}, {rate:,.0f} ids/s)"
            )
        if end <= before:  # its source is being backfilled: its own runs finish it later
            return end - first, runs
    if bound is not None:
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE public.rollups SET max_window_ids = NULL WHERE name = %s", (window,)
            )
        conn.commit()
    return end - first, runs


def dry_run_lines(conn: connection, plan: RollupPlan, drop_removed: bool) -> list[str]:
    """The SQL `apply_rollups` would run, or why it would refuse."""
    if plan.refused:
        return ["-- rollups: refused", *(f"--   {why}" for why in plan.refused)]
    with conn.cursor() as cur:
        citus = on_citus(cur)
    conn.rollback()
    out = [f"-- {line}" for line in plan.lines(dropped=drop_removed)]
    out += [f"{s};" for s in statements(plan, citus)]
    if drop_removed:
        out += [f"{s};" for s in drop_statements(conn, plan)]
    return out


def registered_functions(conn: connection) -> list[str]:
    """The rollup functions in the registry, in the order the ingest job runs them."""
    with conn.cursor() as cur:
        cur.execute(REGISTERED_FUNCTIONS)
        return [row[0] for row in cur.fetchall()]
