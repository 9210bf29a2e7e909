"""The event model: the fields a team's events carry and the rules each keeps, as data.

A model is a TOML file: `conf/models/<name>.toml` in the wheel (`lab`, the default: the lab's
six-field event) or a path. It is validated once, at load, and a mistake names its key. The
validation rules (`rules`), the schemas and the events columns derive from it; importable
without Spark.

Rules run field by field in the order the model lists the fields, each field's in a fixed order
(`rules.field_rules`), then the event time's: the first rule a record breaks names its dead letter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from clickstream_pipeline.core.errors import ConfigError
from clickstream_pipeline.core.names import DURATION, IDENTIFIER, RESERVED_COLUMNS, duration_s
from clickstream_pipeline.core.rollup_spec import RollupSpec, rollup_misfits

# The types both validation paths handle (each maps them: `schema.spark_type`,
# `transforms.typed`, `arrow_validation.DECODED_TYPES`) and their columns' (`sql_type`)
FieldType = Literal[
    "bigint", "integer", "double", "numeric", "boolean", "text", "timestamp", "jsonb"
]
NUMBER_TYPES = ("bigint", "integer", "double", "numeric")
INTEGER_TYPES = ("bigint", "integer")
SQL_TYPES = {
    "bigint": "bigint",
    "integer": "integer",
    "double": "double precision",
    "boolean": "boolean",
    "text": "text",
    "timestamp": "timestamp with time zone",
    "jsonb": "jsonb",
}
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # an integer's range (a bigint's is int64's)
ID_COLUMN = "source_event_id"  # where the producer's event id goes
PROPERTIES = "properties"  # the fields a model does not name, as sent (unknown_fields = "keep")


class ModelError(ConfigError):
    """The event model cannot be loaded or is invalid."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Spec):
    """One field of the event: its type and the rules its values keep."""

    type: FieldType = Field(description="The value's type; its column's SQL type in `events`.")
    required: bool = Field(default=False, description="Absent or null: `missing_<field>`.")
    min: float | None = Field(
        default=None, description="Numbers: below it, `out_of_range_<field>`."
    )
    max: float | None = Field(
        default=None, description="Numbers: above it, `out_of_range_<field>`."
    )
    precision: int = Field(
        default=18, ge=1, le=38, description="Numeric: digits in all; more, `out_of_range_<field>`."
    )
    scale: int = Field(
        default=2, ge=0, le=38, description="Numeric: digits after the point (rounded half up)."
    )
    trim: bool = Field(default=False, description="Text: spaces at both ends removed.")
    lower: bool = Field(default=False, description="Text: folded to lower case.")
    max_length: int | None = Field(
        default=None, gt=0, description="Text: longer (as sent), `too_long_<field>`."
    )
    allowed: tuple[str, ...] | None = Field(
        default=None,
        description="Text: any other value (once trimmed and folded), `not_allowed_<field>`.",
    )
    pattern: str | None = Field(
        default=None,
        description=(
            "Text: a value (once trimmed and folded) it does not match whole, "
            "`not_matching_<field>`."
        ),
    )
    control_chars: bool = Field(
        default=False, description="Text: allow control characters (else `control_chars_<field>`)."
    )

    @model_validator(mode="after")
    def _rules_fit_the_type(self) -> FieldSpec:
        text_only = ("trim", "lower", "max_length", "allowed", "pattern", "control_chars")
        given = self.model_fields_set
        if self.type != "text" and (wrong := [k for k in text_only if k in given]):
            raise ValueError(f"{', '.join(wrong)} applies to text, not {self.type}")
        if self.type not in NUMBER_TYPES and (wrong := [k for k in ("min", "max") if k in given]):
            raise ValueError(f"{', '.join(wrong)} applies to numbers, not {self.type}")
        if self.type != "numeric" and (wrong := [k for k in ("precision", "scale") if k in given]):
            raise ValueError(f"{', '.join(wrong)} applies to numeric, not {self.type}")
        if self.scale > self.precision:
            raise ValueError(f"scale {self.scale} is more than precision {self.precision}")
        if self.type in INTEGER_TYPES:
            for key in ("min", "max"):
                bound = getattr(self, key)
                if bound is not None and bound != int(bound):
                    raise ValueError(f"{key} of an {self.type} must be a whole number")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is more than max {self.max:g}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a regular expression: {exc}") from None
        return self

    @property
    def sql_type(self) -> str:
        """Its column's type in `events`."""
        if self.type == "numeric":
            return f"numeric({self.precision},{self.scale})"
        return SQL_TYPES[self.type]

    def bounds(self, within_type: bool = False) -> tuple[float | None, float | None]:
        """`min` and `max` (whole numbers for an integer type); `within_type`: an integer's
        narrowed to its 32-bit range."""
        low, high = self.min, self.max
        if self.type not in INTEGER_TYPES:
            return low, high
        if within_type and self.type == "integer":
            low = INT32_MIN if low is None else max(low, INT32_MIN)
            high = INT32_MAX if high is None else min(high, INT32_MAX)
        return (None if low is None else int(low)), (None if high is None else int(high))


def _a_duration(value: str | None) -> str | None:
    if value is not None and not DURATION.fullmatch(value):
        raise ValueError(f"{value!r} is not a duration such as 30s, 15m, 6h or 2d")
    return value


class TimeSpec(_Spec):
    """The event time: the field it comes from, its formats, its fallback and its bounds."""

    field: str = Field(default="event_time", description="The payload field and the column.")
    formats: tuple[Literal["iso8601", "epoch_millis"], ...] = Field(
        default=("iso8601", "epoch_millis"),
        min_length=1,
        description="How it may be written: ISO-8601 text, epoch milliseconds (10-15 digits).",
    )
    fallback: Literal["kafka_timestamp"] | None = Field(
        default="kafka_timestamp",
        description="Used when the field is absent; none: `missing_<time field>`.",
    )
    max_past: str = Field(default="2d", description="How old an event may be: 30s, 15m, 6h, 2d.")
    max_future: str = Field(default="15m", description="How far ahead an event may be.")

    _durations = field_validator("max_past", "max_future")(_a_duration)

    @property
    def max_past_s(self) -> int:
        return duration_s(self.max_past)

    @property
    def max_future_s(self) -> int:
        return duration_s(self.max_future)


class RetentionSpec(_Spec):
    """How long each table keeps its rows (`[retention]`); none keeps them all."""

    events: str | None = Field(
        default=None,
        description=(
            "Raw events: whole partitions older than this are dropped (by pg_partman). At least "
            "`time.max_past`, so a late event still finds its partition."
        ),
    )
    rollups: str | None = Field(
        default=None,
        description="Every rollup table: rows whose bucket is older than this are deleted.",
    )
    rollup: dict[str, str] = Field(
        default_factory=dict,
        description="Per rollup table (its name), instead of `rollups`.",
    )
    bookkeeping: str | None = Field(
        default="7d",
        description=(
            "The offset ledger, the batch records and the per-tenant freshness: rows older "
            "than this are deleted, but the ledger and the batch records keep each stream's "
            "newest 100 batches whatever their age (the batches Spark's checkpoint can replay)."
        ),
    )

    _durations = field_validator("events", "rollups", "bookkeeping")(_a_duration)

    @field_validator("rollup")
    @classmethod
    def _rollup_durations(cls, value: dict[str, str]) -> dict[str, str]:
        for table, keep in value.items():
            if not IDENTIFIER.fullmatch(table):
                raise ValueError(f"{table!r} is not a table name")
            _a_duration(keep)
        return value

    def rollup_keep(self, table: str) -> str | None:
        return self.rollup.get(table, self.rollups)


DRAWN_TYPES = (*INTEGER_TYPES, "text", "jsonb")  # drawn from a set of values (cardinality)
DEFAULT_CARDINALITY = 1000
# What `control_chars` refuses (Spark's rules, the worker's and the generator's checks)
CONTROL_CHARS_PATTERN = r"[\x00-\x1F\x7F]"
CONTROL_CHARS = re.compile(CONTROL_CHARS_PATTERN)


class GenerateSpec(_Spec):
    """How the producer draws one field for synthetic events: an entry of `[generate]`.

    Five keys only: the field's rules already bound its values (min, max, allowed, max_length,
    pattern), so what is left to say is how many distinct values, how skewed, how often absent
    and, for text, what a value looks like. Anything richer belongs in a producer of your own.
    """

    cardinality: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Integers, text, jsonb: distinct values drawn (integers: min, min + 1, ...); "
            "default: min..max when both are set, the values or allowed given, else 1000."
        ),
    )
    skew: float = Field(
        default=0.0,
        ge=0,
        le=10,
        description="Integers, text, jsonb: Zipf exponent, the first value likeliest; 0 uniform.",
    )
    null_share: float = Field(
        default=0.0, ge=0, le=1, description="Optional fields: the share of events without it."
    )
    values: tuple[str, ...] | None = Field(
        default=None, min_length=1, description="Text: the values drawn, the first likeliest."
    )
    template: str | None = Field(
        default=None, description="Text: a value, `{n}` replaced by the drawn index (1, 2, ...)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> GenerateSpec:
        if self.values is not None and self.template is not None:
            raise ValueError("values and template: give one")
        if self.template is not None and "{n}" not in self.template:
            raise ValueError("template has no {n}")
        return self

    def integer_values(self, spec: FieldSpec) -> tuple[int, int]:
        """An integer field's values: the first (its min, else 1) and how many."""
        count = self.cardinality or (
            int(spec.max - spec.min) + 1
            if spec.min is not None and spec.max is not None
            else DEFAULT_CARDINALITY
        )
        if spec.min is not None:
            return int(spec.min), count
        if spec.max is None or spec.max >= count:
            return 1, count
        return int(spec.max) - count + 1, count

    def text_count(self, spec: FieldSpec) -> int:
        """How many distinct texts: the cardinality, else the values' or allowed's number."""
        listed = self.values or (None if self.template else spec.allowed)
        return self.cardinality or (len(listed) if listed else DEFAULT_CARDINALITY)

    def misfits(self, name: str, model: EventModel) -> list[tuple[str, str]]:
        """Each key ("" for the entry) that does not fit field `name` of `model`, and why."""
        spec = model.fields.get(name)
        if spec is None:
            return [("", f"{name!r} is not one of the fields")]
        if name == model.id:
            return [("", "the producer numbers the event id")]
        given, kind = self.model_fields_set, spec.type
        wrong: list[tuple[str, str]] = [
            (k, f"applies to text, not {kind}")
            for k in ("values", "template")
            if k in given and kind != "text"
        ]
        if kind not in DRAWN_TYPES:
            wrong += [
                (k, f"applies to integers, text and jsonb, not {kind}")
                for k in ("cardinality", "skew")
                if k in given
            ]
        if spec.required and self.null_share:
            wrong.append(("null_share", f"{name} is required"))
        if wrong:
            return wrong
        if kind in INTEGER_TYPES:
            low, count = self.integer_values(spec)
            top = INT32_MAX if kind == "integer" else 2**63 - 1
            high = min(top, top if spec.max is None else int(spec.max))
            if low + count - 1 > high:
                wrong.append(("cardinality", f"{count} values from {low} pass {high}"))
        if kind == "text":
            listed = self.values or (None if self.template else spec.allowed)
            count = self.text_count(spec)
            if listed and count > len(listed):
                wrong.append(("cardinality", f"{count} is more than the {len(listed)} values"))
            samples = self.values or (
                [self.template.replace("{n}", str(n)) for n in (1, count)] if self.template else []
            )
            for text in samples:
                if (problem := text_problem(spec, text)) is not None:
                    wrong.append(("values" if self.values else "template", f"{text!r} {problem}"))
                    break
        return wrong


def text_problem(spec: FieldSpec, text: str) -> str | None:
    """Why the field's rules would refuse `text` sent as its value, or None."""
    kept = text.strip(" ") if spec.trim else text
    kept = kept.lower() if spec.lower else kept
    if spec.required and not text.strip(" "):
        return "is empty"
    if spec.max_length is not None and len(text) > spec.max_length:
        return f"is longer than max_length {spec.max_length}"
    if not spec.control_chars and CONTROL_CHARS.search(text):
        return "has control characters"
    if text[:1] in ("{", "["):
        return "starts like JSON"
    if spec.allowed is not None and kept not in spec.allowed:
        return "is not allowed"
    if spec.pattern is not None and not re.fullmatch(spec.pattern, kept):
        return f"does not match pattern {spec.pattern!r}"
    return None


class EventModel(_Spec):
    """An event: its fields, its tenant (Citus's distribution column), its time and its id."""

    name: str = Field(description="The model's name (its file's, for a packaged model).")
    tenant: str = Field(description="The field that names the tenant: Citus's distribution column.")
    time: TimeSpec = Field(default_factory=TimeSpec, description="The event time.")
    id: str | None = Field(
        default=None, description="The producer's event id field, if any: `events.source_event_id`."
    )
    unknown_fields: Literal["keep", "drop", "dead_letter"] = Field(
        default="keep",
        description=(
            "Fields the model does not name: kept with their values as sent in the `properties` "
            "jsonb column, dropped, or the record is an `unknown_field` dead letter."
        ),
    )
    fields: dict[str, FieldSpec] = Field(
        min_length=1, description="The fields, in the order their rules run."
    )
    generate: dict[str, GenerateSpec] = Field(
        default_factory=dict,
        description="How the producer draws each field (`[generate]`, checked by `parse_model`).",
    )
    retention: RetentionSpec = Field(
        default_factory=RetentionSpec,
        description="How long each table keeps its rows (`[retention]`, beside `[event]`).",
    )
    rollups: dict[str, RollupSpec] = Field(
        default_factory=dict,
        description="The rollup tables, by name (`[rollups.<table>]`, checked by `parse_model`).",
    )

    @model_validator(mode="after")
    def _names_hold(self) -> EventModel:
        names = [*self.fields, self.time.field]
        for name in names:
            if not IDENTIFIER.fullmatch(name):
                raise ValueError(
                    f"field {name!r} is not a safe SQL identifier (lower-case letters, digits "
                    "and _, not starting with a digit, at most 63 characters)"
                )
            if name in RESERVED_COLUMNS and name != self.id:
                raise ValueError(f"field {name!r} takes the name of a column the pipeline writes")
        if self.time.field in self.fields:
            raise ValueError(
                f"time.field {self.time.field!r} is also in fields: the time is described once, "
                "under [event.time]"
            )
        if self.tenant not in self.fields:
            raise ValueError(f"tenant {self.tenant!r} is not one of the fields")
        tenant = self.fields[self.tenant]
        if (tenant.type not in INTEGER_TYPES and tenant.type != "text") or not tenant.required:
            raise ValueError(f"tenant {self.tenant!r} must be a required bigint, integer or text")
        if self.id is not None:
            if self.id not in self.fields:
                raise ValueError(f"id {self.id!r} is not one of the fields")
            if self.fields[self.id].type != "bigint":
                raise ValueError(f"id {self.id!r} must be a bigint")
        events = self.retention.events
        if events is not None and duration_s(events) < self.time.max_past_s:
            raise ValueError(
                f"retention.events {events} is shorter than time.max_past {self.time.max_past}: "
                "a late event would find its partition dropped"
            )
        return self

    @property
    def payload_fields(self) -> tuple[str, ...]:
        """Every field the model names in a message: its fields and the event time."""
        return (*self.fields, self.time.field)

    @property
    def event_fields(self) -> tuple[str, ...]:
        """The fields written to their own columns, in order (the id goes last, as source id)."""
        return tuple(f for f in self.fields if f != self.id)

    @property
    def event_columns(self) -> tuple[str, ...]:
        """The columns the ingest job writes into `events`, in order."""
        source = ("kafka_topic", "kafka_partition", "kafka_offset", ID_COLUMN)
        kept = (PROPERTIES,) if self.unknown_fields == "keep" else ()
        return (self.time.field, *self.event_fields, *kept, *source)


def packaged_models() -> list[str]:
    folder = resources.files("clickstream_pipeline.conf.models")
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


@dataclass(frozen=True)
class _Source:
    where: str
    text: str


def _source(name_or_path: str) -> _Source:
    if IDENTIFIER.fullmatch(name_or_path):
        resource = resources.files("clickstream_pipeline.conf.models").joinpath(
            f"{name_or_path}.toml"
        )
        if not resource.is_file():
            raise ModelError(
                f"no event model {name_or_path!r}; packaged models: {', '.join(packaged_models())} "
                "(or give a path to a .toml file)"
            )
        return _Source(f"event model {name_or_path!r}", resource.read_text(encoding="utf-8"))
    path = Path(name_or_path)
    try:
        return _Source(f"event model {path}", path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read the event model {path}: {exc.strerror}") from None


def parse_model(text: str, where: str = "event model", name: str = "") -> EventModel:
    """A model from TOML text (`[event]` with `[event.fields]`, and `[generate]`, `[retention]`
    and `[rollups]` if any), or ModelError naming the key."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{where} is not valid TOML: {exc}") from None
    if set(data) - {"generate", "retention", "rollups"} != {"event"}:
        raise ModelError(f"{where}: expected one [event] table, found {sorted(data) or 'nothing'}")
    event = {"name": name, **data["event"]}
    for beside in ("generate", "retention", "rollups"):
        if beside in event:
            raise ModelError(f"{where}: event.{beside}: [{beside}] is a table beside [event]")
    try:
        event["retention"] = RetentionSpec.model_validate(data.get("retention", {}))
    except ValidationError as exc:
        raise ModelError(f"{where} is invalid: {_problems(exc, 'retention')}") from None
    try:
        event["rollups"] = _ROLLUPS.validate_python(data.get("rollups", {}))
    except ValidationError as exc:
        raise ModelError(f"{where} is invalid: {_problems(exc, 'rollups')}") from None
    try:
        model = EventModel.model_validate(event)
    except ValidationError as exc:
        raise ModelError(f"{where} is invalid: {_problems(exc, 'event')}") from None
    wrong = [f"rollups.{key}: {problem}" for key, problem in rollup_misfits(model)]
    if wrong:
        raise ModelError(f"{where} is invalid: {'; '.join(wrong)}")
    return with_generate(model, data.get("generate", {}), where)


_ROLLUPS = TypeAdapter(dict[str, RollupSpec])


_GENERATE = TypeAdapter(dict[str, GenerateSpec])


def with_generate(model: EventModel, table: Any, where: str = "event model") -> EventModel:
    """`model` with its `[generate]` table, each entry checked against its field."""
    try:
        specs = _GENERATE.validate_python(table)
    except ValidationError as exc:
        raise ModelError(f"{where} is invalid: {_problems(exc, 'generate')}") from None
    wrong = [
        f"{'.'.join(p for p in ('generate', name, key) if p)}: {problem}"
        for name, spec in specs.items()
        for key, problem in spec.misfits(name, model)
    ]
    if wrong:
        raise ModelError(f"{where} is invalid: {'; '.join(wrong)}")
    return model.model_copy(update={"generate": specs})


def _problems(exc: ValidationError, table: str) -> str:
    return "; ".join(
        f"{'.'.join([table, *(str(p) for p in err['loc'])])}: "
        + err["msg"].removeprefix("Value error, ")
        for err in exc.errors()
    )


@cache
def load_model(name_or_path: str = "lab") -> EventModel:
    """A packaged model by name (`lab`) or a model file by path."""
    source = _source(name_or_path)
    name = name_or_path if IDENTIFIER.fullmatch(name_or_path) else Path(name_or_path).stem
    return parse_model(source.text, source.where, name)


LAB = load_model("lab")
