"""Rollups as data: the `[rollups.<table>]` tables of an event model.

A rollup is a table of buckets (a granularity), keyed by dimensions (model fields, the tenant
first where it is one) and holding measures: counts, sums, minima and maxima of numeric fields,
distinct counts as HyperLogLog, most frequent values as TopN. `warehouse.rollups` generates
its table, function, schedule, view and grants; this module only says what a rollup is and
checks it against the model's fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clickstream_pipeline.core.names import IDENTIFIER, RESERVED_COLUMNS, duration_s

if TYPE_CHECKING:
    from clickstream_pipeline.core.model import EventModel

MeasureKind = Literal["count", "sum", "min", "max", "distinct", "topn"]
KINDS: tuple[MeasureKind, ...] = ("count", "sum", "min", "max", "distinct", "topn")
NUMBER_TYPES = ("bigint", "integer", "double", "numeric")
DISTINCT_TYPES = ("bigint", "integer", "text")  # hashed by hll_hash_<type>
TOPN_TYPES = ("bigint", "integer", "double", "numeric", "text")
DAY_S = 86400


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeasureSpec(_Spec):
    """One measure column: `"count"`, or a table naming its kind and field (`{ sum = "revenue" }`,
    `{ distinct = "device_id", precision = 14 }`, `{ topn = "page_url" }`)."""

    kind: MeasureKind = Field(description="count, sum, min, max, distinct (HLL) or topn.")
    field: str | None = Field(default=None, description="The field it reads (not for count).")
    precision: int = Field(
        default=14,
        ge=10,
        le=17,
        description="distinct: log2 of the HLL's registers (14: 0.8% standard error).",
    )
    label: str | None = Field(
        default=None, description="Its column's name in the rollup's BI view (default: its own)."
    )

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, value: Any) -> Any:
        if value == "count":
            return {"kind": "count"}
        if not isinstance(value, dict) or "kind" in value:
            return value
        kinds = [k for k in KINDS if k in value]
        if len(kinds) != 1:
            raise ValueError(f"give one of {', '.join(KINDS)} (found {', '.join(kinds) or 'none'})")
        rest = {k: v for k, v in value.items() if k != kinds[0]}
        if kinds[0] == "count":
            if value["count"] is not True:
                raise ValueError("count = true (a count has no field)")
            return {"kind": "count", **rest}
        return {"kind": kinds[0], "field": value[kinds[0]], **rest}

    @model_validator(mode="after")
    def _fits_its_kind(self) -> MeasureSpec:
        if (self.kind == "count") != (self.field is None):
            raise ValueError("count has no field; every other measure names one")
        if "precision" in self.model_fields_set and self.kind != "distinct":
            raise ValueError("precision applies to distinct")
        return self


class RollupSpec(_Spec):
    """One rollup table: `[rollups.<table>]`."""

    granularity: str = Field(
        description="The bucket's length: 1m, 5m, 15m, 1h, 6h, 1d (it divides a day)."
    )
    dimensions: tuple[str, ...] = Field(
        default=(), description="The fields it is keyed by, the tenant first where it is one."
    )
    measures: dict[str, MeasureSpec] = Field(
        min_length=1, description="Its measure columns, by name, in order."
    )
    bucket: str = Field(default="bucket", description="The bucket start's column.")
    source: str = Field(
        default="events",
        description=(
            "What it aggregates: `events` (the raw events), or a finer rollup of the model (its "
            "table): counts and sums add up, minima and maxima carry over, HLL and TopN merge. "
            "A rollup of a rollup recomputes the buckets new events touch, and is backfilled "
            "from its source, raw events expired or not."
        ),
    )
    function: str | None = Field(
        default=None,
        description=(
            "The function that fills it (default `<table>_aggregation`); rollups that share one "
            "share its window of event ids and its schedule."
        ),
    )
    window: str | None = Field(
        default=None,
        description="Its row in the `rollups` registry (default: the table's name).",
    )
    schedule: str = Field(
        default="* * * * *", description="pg_cron's schedule of its function (cron syntax)."
    )
    view: str | None = Field(default=None, description="Its BI view (default `bi_<table>`).")
    single_event_groups: bool = Field(
        default=False,
        description=(
            "Most groups hold one event (a fine key): such groups take their HLL and TopN "
            "values from scalar functions, a third of the aggregates' work."
        ),
    )
    description: str = Field(default="", description="The table's comment.")
    dashboard: bool = Field(
        default=False,
        # not what the table is generated from: left out of its registered definition, so
        # turning it on or off regenerates nothing
        exclude=True,
        description=(
            "The dashboard offers breakdowns by its dimensions (the tenant's aside), ranked by "
            "its first count: one rollup of the model at most."
        ),
    )

    @field_validator("granularity")
    @classmethod
    def _divides_a_day(cls, value: str) -> str:
        seconds = duration_s(value)
        if seconds < 60 or DAY_S % seconds:
            raise ValueError(f"{value!r}: a rollup's granularity is at least 1m and divides 1d")
        return value

    @property
    def granularity_s(self) -> int:
        return duration_s(self.granularity)

    def function_name(self, table: str) -> str:
        return self.function or f"{table}_aggregation"

    def window_name(self, table: str) -> str:
        return self.window or table

    def view_name(self, table: str) -> str:
        return self.view or f"bi_{table}"

    def columns(self) -> tuple[str, ...]:
        return (*self.dimensions, self.bucket, *self.measures)

    @property
    def from_events(self) -> bool:
        return self.source == "events"

    def breakdowns(self, model: EventModel) -> tuple[str, ...]:
        """The dimensions the dashboard offers breakdowns by: all but the tenant."""
        return tuple(d for d in self.dimensions if d != model.tenant)

    def source_column(self, measure: MeasureSpec) -> str | None:
        """The measure column of this rollup that `measure` of a coarser one merges, if any."""
        for name, mine in self.measures.items():
            if (mine.kind, mine.field, mine.precision) == (
                measure.kind,
                measure.field,
                measure.precision,
            ):
                return name
        return None

    def misfits(self, table: str, model: EventModel) -> list[tuple[str, str]]:
        """Each key ("" for the rollup) that does not fit `model`, and why."""
        wrong: list[tuple[str, str]] = []
        names = [
            ("", table),
            ("bucket", self.bucket),
            ("function", self.function_name(table)),
            ("window", self.window_name(table)),
            ("view", self.view_name(table)),
            ("source", self.source),
            *((f"measures.{m}", m) for m in self.measures),
            *((f"measures.{m}.label", s.label) for m, s in self.measures.items() if s.label),
        ]
        wrong += [
            (k, f"{n!r} is not a safe SQL identifier")
            for k, n in names
            if not IDENTIFIER.fullmatch(n)
        ]
        for dim in self.dimensions:
            if dim not in model.fields:
                wrong.append(("dimensions", f"{dim!r} is not one of the fields"))
            elif model.fields[dim].type == "jsonb":
                wrong.append(("dimensions", f"{dim!r} is jsonb: a key needs a scalar"))
        if len(set(self.dimensions)) < len(self.dimensions):
            wrong.append(("dimensions", "a field is named twice"))
        if model.tenant in self.dimensions and self.dimensions[0] != model.tenant:
            wrong.append(("dimensions", f"the tenant {model.tenant!r} goes first (Citus's key)"))
        if self.bucket in {*model.payload_fields, *RESERVED_COLUMNS}:
            wrong.append(("bucket", f"{self.bucket!r} is a column of events"))
        columns = self.columns()
        if len(set(columns)) < len(columns):
            wrong.append(("", "a column is named twice (dimensions, bucket, measures)"))
        labels = [s.label or m for m, s in self.measures.items()]
        if len(set(labels)) < len(labels) or set(labels) & {*self.dimensions, "bucket_start"}:
            wrong.append(("measures", "two columns of its view would share a name"))
        for name, measure in self.measures.items():
            wrong += [(f"measures.{name}", p) for p in _measure_problems(measure, model)]
        if self.dashboard:
            if not any(m.kind == "count" for m in self.measures.values()):
                wrong.append(("dashboard", "it has no count measure to rank by"))
            if not self.breakdowns(model):
                wrong.append(("dashboard", "it has no dimension but the tenant to break down by"))
        return wrong


def _measure_problems(measure: MeasureSpec, model: EventModel) -> list[str]:
    if measure.field is None:
        return []
    spec = model.fields.get(measure.field)
    if spec is None:
        return [f"{measure.field!r} is not one of the fields"]
    if measure.kind in ("sum", "min", "max") and spec.type not in NUMBER_TYPES:
        return [f"a {measure.kind} of {measure.field!r} ({spec.type}) needs a number"]
    if measure.kind == "distinct" and spec.type not in DISTINCT_TYPES:
        return [f"a distinct count of {spec.type} {measure.field!r} needs bigint, integer or text"]
    if measure.kind == "topn" and spec.type not in TOPN_TYPES:
        return [f"TopN of {spec.type} {measure.field!r} needs a number or text"]
    return []


def rollup_misfits(model: EventModel) -> list[tuple[str, str]]:
    """Each `rollups.` key that does not fit `model` (each rollup's own, and those rollups
    share: functions and windows one-to-one, one schedule per function, one dashboard rollup,
    horizons), and why."""
    wrong = [
        (f"{table}.{key}".rstrip("."), problem)
        for table, spec in model.rollups.items()
        for key, problem in spec.misfits(table, model)
    ]
    boards = [table for table, spec in model.rollups.items() if spec.dashboard]
    wrong += [
        (f"{table}.dashboard", f"{boards[0]} sets it already: one dashboard rollup per model")
        for table in boards[1:]
    ]
    functions: dict[str, tuple[str, str, str]] = {}
    taken = {"events", "rollups"}
    for table, spec in model.rollups.items():
        group = (spec.window_name(table), spec.schedule, table)
        first = functions.setdefault(spec.function_name(table), group)
        if first[:2] != group[:2]:
            wrong.append(
                (
                    f"{table}.function",
                    f"{spec.function_name(table)!r} also fills {first[2]} with window "
                    f"{first[0]!r} and schedule {first[1]!r}: one window and schedule per function",
                )
            )
        for key, name in (("", table), ("view", spec.view_name(table))):
            if name in taken or name.startswith("clickstream_"):
                wrong.append((f"{table}.{key}".rstrip("."), f"{name!r} is taken"))
            taken.add(name)
    windows: dict[str, str] = {}
    for table, spec in model.rollups.items():
        fn = windows.setdefault(spec.window_name(table), spec.function_name(table))
        if fn != spec.function_name(table):
            wrong.append((f"{table}.window", f"window {spec.window_name(table)!r} belongs to {fn}"))
    for table, spec in model.rollups.items():
        if not spec.from_events:
            wrong += [(f"{table}.{key}".rstrip("."), p) for key, p in _source_misfits(spec, model)]
    sources: dict[str, tuple[str, str]] = {}
    for table, spec in model.rollups.items():
        fn = spec.function_name(table)
        first_source, first_table = sources.setdefault(fn, (spec.source, table))
        if first_source != spec.source:
            wrong.append(
                (
                    f"{table}.function",
                    f"{fn!r} also fills {first_table}, which reads {first_source}: "
                    "one source per function",
                )
            )
    events = model.retention.events
    for table, spec in model.rollups.items():
        keep = model.retention.rollup_keep(table)
        if keep is not None and duration_s(keep) < spec.granularity_s:
            wrong.append(
                (f"{table}.granularity", f"longer than its retention {keep}: no bucket would stay")
            )
        if events is None or not spec.from_events:  # a rollup of a rollup: its source's
            continue
        if duration_s(events) < spec.granularity_s + model.time.max_past_s:
            wrong.append(
                (
                    f"{table}.granularity",
                    f"retention.events {events} is shorter than a {spec.granularity} bucket and "
                    f"time.max_past {model.time.max_past}: raw events of a bucket it still fills "
                    "would be gone before it could be rebuilt",
                )
            )
    return wrong


def dashboard_rollup(model: EventModel) -> tuple[str, RollupSpec] | None:
    """The rollup the dashboard offers breakdowns of (`dashboard = true`), if any: its table
    and spec."""
    return next(((t, s) for t, s in model.rollups.items() if s.dashboard), None)


def _source_misfits(spec: RollupSpec, model: EventModel) -> list[tuple[str, str]]:
    """Why a rollup of a rollup cannot be computed from its source (key, problem)."""
    source = model.rollups.get(spec.source)
    if source is None:
        return [("source", f"{spec.source!r} is neither events nor a rollup of the model")]
    if not source.from_events:
        return [("source", f"{spec.source!r} reads {source.source}: a source reads events")]
    wrong: list[tuple[str, str]] = []
    if spec.granularity_s < source.granularity_s:
        wrong.append(
            ("granularity", f"{spec.granularity} is finer than its source's {source.granularity}")
        )
    elif spec.granularity_s % source.granularity_s:
        wrong.append(
            (
                "granularity",
                f"{spec.granularity} is not a whole number of its source's {source.granularity}",
            )
        )
    wrong += [
        ("dimensions", f"{d!r} is not a dimension of its source {spec.source}")
        for d in spec.dimensions
        if d not in source.dimensions
    ]
    if model.tenant in source.dimensions and model.tenant not in spec.dimensions:
        # its runs join the source with the window's events on the tenant (on Citus: the shards)
        wrong.append(
            ("dimensions", f"the tenant {model.tenant!r} is a dimension of its source: keep it")
        )
    for name, measure in spec.measures.items():
        if source.source_column(measure) is None:
            what = measure.kind + (f" of {measure.field!r}" if measure.field else "")
            if measure.kind == "distinct":
                what += f" at precision {measure.precision}"
            wrong.append((f"measures.{name}", f"its source {spec.source} has no {what}"))
    keep = model.retention.rollup_keep(spec.source)
    if keep is not None and duration_s(keep) < spec.granularity_s + model.time.max_past_s:
        wrong.append(
            (
                "source",
                f"{spec.source} is kept {keep}, shorter than a {spec.granularity} bucket and "
                f"time.max_past {model.time.max_past}: a bucket new events touch could no "
                "longer be recomputed from it",
            )
        )
    return wrong
