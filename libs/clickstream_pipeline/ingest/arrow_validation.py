"""The validation rules in the Python worker: raw Kafka Arrow batches -> validated rows.

The same ordered rules as `transforms` (the reference, run by Spark), both from the event model
(`rules.model_rules`), for the records whose meaning is plain: a value of at most
`PLAIN_MAX_BYTES` starting with `{` that msgspec decodes strictly into the model's types
(integers as JSON integers or digit strings, numbers and booleans as JSON numbers and
booleans, text as JSON strings, lower-cased text in ASCII, the event time as epoch
milliseconds or `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM)`). A value over
`Rules.max_message_bytes` is decided here whatever it holds: a dead letter ("too_large")
keeping its first `TOO_LARGE_KEPT_BYTES`. Any other record is *undecided* and handed back raw
for Spark's rules to judge: where Spark's JSON reader is more lenient than msgspec (NaN, single
quotes, trailing text) or a cast is subtle (signs, spaces, other time formats, non-ASCII case
mapping), Spark decides, so a record's fate never depends on the path it took.

Per batch: one msgspec decode per record, then Arrow kernels over whole columns.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.pandas.types import to_arrow_schema

from clickstream_pipeline.core.model import (
    INT32_MAX,
    INT32_MIN,
    INTEGER_TYPES,
    EventModel,
    FieldSpec,
)
from clickstream_pipeline.core.schema import validated_schema
from clickstream_pipeline.ingest.rules import TOO_LARGE_KEPT_BYTES, Rule, Rules
from clickstream_pipeline.ingest.transforms import CONTROL_CHARS
from clickstream_pipeline.ingest.transforms import EPOCH_MILLIS as EPOCH_MILLIS_PATTERN

# Longer values go to Spark: Jackson's limits (nesting depth 1000, numbers of 1000 digits)
# cannot be reached below this size, so msgspec and Spark accept the same documents here.
PLAIN_MAX_BYTES = 1000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DIGITS = re.compile(r"[0-9]{1,18}")
EPOCH_MILLIS = re.compile(EPOCH_MILLIS_PATTERN)  # used with fullmatch: no trailing newline
ISO_TIME = (
    r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-](0[0-9]|1[0-7]):[0-5][0-9])$"
)
TIMESTAMP = pa.timestamp("us", tz="UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = datetime.resolution
# Rules no decided record can break: the worker hands their breakers to Spark undecided.
UNDECIDED_KINDS = frozenset(
    {
        "invalid_utf8",
        "malformed_json",
        "unknown_field",
        "not_integer",
        "not_number",
        "not_boolean",
        "not_timestamp",
        "not_json",
        "bad_time",
    }
)
# What msgspec accepts for each field type; anything else leaves the record to Spark.
DECODED_TYPES: dict[str, Any] = {
    "bigint": int | str | None,
    "integer": int | str | None,
    "double": float | None,
    "boolean": bool | None,
    "text": str | None,
    "numeric": msgspec.Raw,  # as sent: a JSON number is read exactly, never through a float
    "timestamp": int | str | None,
    "jsonb": msgspec.Raw,
}
JSON_NUMBER_START = frozenset(b"-0123456789")
_DECIMALS = decimal.Context(prec=100, traps=[decimal.InvalidOperation])


@dataclass(frozen=True)
class Decoder:
    """The model's msgspec decoders, its Arrow schema and its rules, built once per model."""

    decode: Callable[[bytes], Any]  # strict: refuses unknown fields unless they are dropped
    schema: pa.Schema
    rules: list[Rule]
    empty: Any
    keep: bool  # unknown fields go to `properties`
    lenient: Callable[[bytes], Any]  # the model's fields, unknown ones skipped
    fields: Callable[[bytes], dict[str, msgspec.Raw]]  # every field, its value as sent
    known: frozenset[str]


_DECODERS: dict[str, Decoder] = {}  # by the model's JSON: each task unpickles its own copy


def decoder(model: EventModel) -> Decoder:
    key = model.model_dump_json()
    if (known := _DECODERS.get(key)) is not None:
        return known
    fields: list[tuple[str, Any, Any]] = [
        (name, DECODED_TYPES[spec.type], None) for name, spec in model.fields.items()
    ]
    fields.append((model.time.field, int | str | None, None))
    # Spark's reader fills its corrupt-record column from a field of that name
    fields.append(
        (
            "corrupt_record",
            msgspec.Raw | msgspec.UnsetType,
            msgspec.field(default=msgspec.UNSET, name="_corrupt_record"),
        )
    )
    strict = msgspec.defstruct(
        "Payload", fields, forbid_unknown_fields=model.unknown_fields != "drop"
    )
    lenient = msgspec.defstruct("Payload", fields)
    built = Decoder(
        msgspec.json.Decoder(strict).decode,
        to_arrow_schema(validated_schema(model)),
        Rules(model).ordered(),
        strict(),
        model.unknown_fields == "keep",
        msgspec.json.Decoder(lenient).decode,
        msgspec.json.Decoder(dict[str, msgspec.Raw]).decode,
        frozenset({*model.payload_fields, "_corrupt_record"}),
    )
    _DECODERS[key] = built
    return built


def _with_unknown(value: bytes, found: Decoder) -> tuple[Any, str | None]:
    """A payload that has fields the model does not name: its own fields, and the others as a
    JSON object with their values as sent; (None, None) when Spark must judge it (a value of
    the wrong type)."""
    try:
        fields = found.fields(value)
        payload = found.lenient(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, None
    unknown = [(k, v) for k, v in fields.items() if k not in found.known]  # the last of a name
    if not unknown or payload.corrupt_record is not msgspec.UNSET:
        return None, None
    pairs = b",".join(msgspec.json.encode(k) + b":" + bytes(v) for k, v in unknown)
    return payload, (b"{" + pairs + b"}").decode()


@dataclass(frozen=True)
class Checked:
    validated: pa.RecordBatch  # the model's validated schema, the decided records
    undecided: pa.RecordBatch  # the other records as they came (the input's columns)


def _decoded(
    values: list[bytes | None], found: Decoder
) -> tuple[list[Any], list[bool], list[str | None]]:
    """Each value's payload, whether it is left to Spark (an empty message is decided), and its
    unknown fields as a JSON object (when the model keeps them)."""
    payloads: list[Any] = []
    undecided: list[bool] = []
    kept: list[str | None] = []
    decode, empty, keep = found.decode, found.empty, found.keep
    for value in values:
        payload, properties = empty, None
        if value is not None:
            if len(value) <= PLAIN_MAX_BYTES and value[:1] == b"{":
                try:
                    payload = decode(value)
                except msgspec.ValidationError:  # a value of another type, or unknown fields
                    payload, properties = _with_unknown(value, found) if keep else (None, None)
                    if payload is None:
                        payload, value = empty, b""
                except msgspec.DecodeError:
                    value = b""
                else:
                    if payload.corrupt_record is not msgspec.UNSET:
                        value = b""
            else:
                value = b""
        payloads.append(payload)
        undecided.append(value == b"")
        kept.append(properties)
    return payloads, undecided, kept


def _integer(value: int | str | None) -> tuple[int | None, bool]:
    if value is None:
        return None, False
    if isinstance(value, int):
        return (value, False) if INT64_MIN <= value <= INT64_MAX else (None, True)
    return (int(value), False) if DIGITS.fullmatch(value) else (None, True)


def integers(values: list[int | str | None]) -> tuple[pa.Array, list[bool] | None]:
    """int64 ids, and which values are not plain (None when all are)."""
    try:
        return pa.array(values, pa.int64()), None  # the common case: JSON integers in range
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pairs = [_integer(v) for v in values]
        return pa.array([p[0] for p in pairs], pa.int64()), [p[1] for p in pairs]


def _event_time_us(value: int | str | None, formats: tuple[str, ...]) -> tuple[int | None, bool]:
    if value is None:
        return None, False
    text = str(value)
    if EPOCH_MILLIS.fullmatch(text):
        return (int(text) * 1000, False) if "epoch_millis" in formats else (None, True)
    if isinstance(value, str) and "iso8601" in formats and re.fullmatch(ISO_TIME, value):
        try:
            return (datetime.fromisoformat(value) - EPOCH) // _MICROSECOND, False
        except ValueError:  # an impossible date (February 30)
            pass
    return None, True


def event_times(
    values: list[int | str | None], formats: tuple[str, ...] = ("iso8601", "epoch_millis")
) -> tuple[pa.Array, list[bool] | None]:
    """Payload event times in microseconds since the epoch, and which are not plain."""
    try:
        strings = pa.array(values, pa.string()) if "iso8601" in formats else None
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        strings = None
    if strings is not None and strings.null_count < len(strings):
        plain = pc.match_substring_regex(strings, ISO_TIME)
        if pc.all(plain).as_py():  # all ISO-8601 strings (or absent): parsed by Arrow
            try:
                return pc.cast(strings, TIMESTAMP).cast(pa.int64()), None
            except pa.ArrowInvalid:
                pass
    pairs = [_event_time_us(v, formats) for v in values]
    return pa.array([p[0] for p in pairs], pa.int64()), [p[1] for p in pairs]


def _normalised(text: pa.Array, spec: FieldSpec) -> pa.Array:
    if spec.trim:
        text = pc.utf8_trim(text, " ")
    return pc.ascii_lower(text) if spec.lower else text  # non-ASCII lower-cased text: Spark's


def _out_of_range(values: pa.Array, spec: FieldSpec) -> pa.Array | None:
    low, high = spec.bounds(within_type=True)
    checks = [
        compare(values, bound)
        for compare, bound in ((pc.less, low), (pc.greater, high))
        if bound is not None
    ]
    return checks[0] if len(checks) == 1 else pc.or_(*checks) if checks else None


def broken(rule: Rule, column: pa.Array | None, typed: pa.Array | None) -> pa.Array | None:
    """Whether each decided record breaks `rule` (`column`: the field as decoded, `typed`: as
    its column holds it), or None for a rule no decided record can break (its breakers are
    undecided: Spark judges them)."""
    spec, kind = rule.spec, rule.kind
    if kind in UNDECIDED_KINDS:
        return None
    if kind in ("missing", "missing_time"):
        return pc.is_null(column)
    if spec is None or column is None:
        return None  # the message's and the time's rules are checked in check_batch
    if kind == "out_of_range":
        return _out_of_range(column, spec)
    if kind == "empty":
        return pc.equal(pc.utf8_trim(column, " "), "")
    if kind == "too_long":
        return pc.greater(pc.utf8_length(column), spec.max_length)
    if kind == "control_chars":
        return pc.match_substring_regex(column, CONTROL_CHARS)
    if kind == "not_text":
        return pc.or_(pc.starts_with(column, "{"), pc.starts_with(column, "["))
    if kind == "not_allowed":
        allowed = pc.is_in(typed, value_set=pa.array(spec.allowed or (), pa.string()))
        return pc.and_(pc.is_valid(typed), pc.invert(allowed))  # absent is not "not allowed"
    if kind == "not_matching":
        return pc.invert(pc.match_substring_regex(typed, f"^(?:{spec.pattern})$"))
    raise ValueError(f"no worker check for rule kind {kind!r}")


def first_reason(checks: list[tuple[pa.Array, str]], n: int) -> pa.Array:
    """The name of the first check each row fails, or null."""
    reason = pa.nulls(n, pa.string())
    for failed, name in reversed(checks):
        reason = pc.if_else(pc.fill_null(failed, False), pa.scalar(name), reason)
    return reason


def _kept_values(value: pa.Array, too_large: pa.Array) -> pa.Array:
    """The values a dead letter keeps: the first `TOO_LARGE_KEPT_BYTES` of one too large."""
    if not too_large.true_count:
        return value
    return pc.if_else(too_large, pc.binary_slice(value, 0, TOO_LARGE_KEPT_BYTES), value)


def _numeric(
    raw: msgspec.Raw | None, quantum: decimal.Decimal, whole_digits: int
) -> tuple[decimal.Decimal | None, bool]:
    """A JSON number rounded half up to `quantum` (the field's scale); not plain when the value
    is not a JSON number or has more than `whole_digits` before the point (Spark decides)."""
    text = b"null" if raw is None else bytes(raw)
    if text == b"null":
        return None, False
    if text[0] not in JSON_NUMBER_START:
        return None, True
    try:
        rounded = _DECIMALS.create_decimal(text.decode()).quantize(
            quantum, decimal.ROUND_HALF_UP, _DECIMALS
        )
    except decimal.InvalidOperation:
        return None, True
    fits = rounded.is_zero() or rounded.adjusted() < whole_digits
    return (rounded, False) if fits else (None, True)


def _json(raw: msgspec.Raw | None) -> tuple[str | None, bool]:
    """An object's or array's JSON text as sent; any other value is not plain."""
    text = b"null" if raw is None else bytes(raw)
    if text == b"null":
        return None, False
    return (text.decode(), False) if text[0] in b"{[" else (None, True)


def _field_column(spec: FieldSpec, values: list[Any]) -> tuple[pa.Array, pa.Array, pa.Array | None]:
    """A field's values as decoded, as its column holds them, and which are not plain."""
    if spec.type == "numeric":
        quantum, whole_digits = decimal.Decimal(1).scaleb(-spec.scale), spec.precision - spec.scale
        numbers = [_numeric(v, quantum, whole_digits) for v in values]
        column = pa.array([n[0] for n in numbers], pa.decimal128(spec.precision, spec.scale))
        return column, column, pa.array([n[1] for n in numbers], pa.bool_())
    if spec.type == "jsonb":
        texts = [_json(v) for v in values]
        column = pa.array([t[0] for t in texts], pa.string())
        return column, column, pa.array([t[1] for t in texts], pa.bool_())
    if spec.type == "timestamp":
        micros, not_plain = event_times(values)
        mask = None if not_plain is None else pa.array(not_plain, pa.bool_())
        return micros, micros.cast(TIMESTAMP), mask
    if spec.type in INTEGER_TYPES:
        ids, not_plain = integers(values)
        mask = None if not_plain is None else pa.array(not_plain, pa.bool_())
        if spec.type == "integer":
            fits = pc.and_(pc.greater_equal(ids, INT32_MIN), pc.less_equal(ids, INT32_MAX))
            return ids, pc.if_else(fits, ids, pa.scalar(None, pa.int64())).cast(pa.int32()), mask
        return ids, ids, mask
    if spec.type == "double":
        numbers = pa.array(values, pa.float64())
        finite = pc.fill_null(pc.is_finite(numbers), True)
        return numbers, numbers, None if pc.all(finite).as_py() else pc.invert(finite)
    if spec.type == "boolean":
        flags = pa.array(values, pa.bool_())
        return flags, flags, None
    text = pa.array(values, pa.string())
    mask = pc.invert(pc.fill_null(pc.string_is_ascii(text), True)) if spec.lower else None
    return text, _normalised(text, spec), mask


def check_batch(raw: pa.RecordBatch, rules: Rules, now_us: int) -> Checked:
    """Validate Kafka rows (`key`, `value`, `topic`, `partition`, `offset`, `timestamp`);
    `now_us` (microseconds since the epoch) is the batch's clock for the event-time bounds."""
    model, found = rules.model, decoder(rules.model)
    n = raw.num_rows
    value = raw.column("value")
    sizes = pc.binary_length(value)
    too_large = pc.fill_null(pc.greater(sizes, rules.max_message_bytes), False)
    long = pc.greater(sizes, PLAIN_MAX_BYTES)
    if long.true_count:  # left to Spark without copying them into Python objects
        payloads, not_decoded, kept = _decoded(
            pc.if_else(long, pa.scalar(b"", value.type), value).to_pylist(), found
        )
    else:
        payloads, not_decoded, kept = _decoded(value.to_pylist(), found)
    left = pa.array(not_decoded, pa.bool_())

    def note(not_plain: list[bool] | pa.Array | None) -> None:
        nonlocal left
        if not_plain is not None:
            mask = not_plain if isinstance(not_plain, pa.Array) else pa.array(not_plain, pa.bool_())
            left = pc.or_(left, mask)

    decoded: dict[str, pa.Array] = {}
    typed: dict[str, pa.Array] = {}
    for name, spec in model.fields.items():
        decoded[name], typed[name], not_plain = _field_column(
            spec, [getattr(p, name) for p in payloads]
        )
        note(not_plain)
    time = model.time
    payload_us, not_plain = event_times([getattr(p, time.field) for p in payloads], time.formats)
    note(not_plain)

    kafka_time = raw.column("timestamp").cast(TIMESTAMP)
    event_us = (
        payload_us
        if time.fallback is None
        else pc.coalesce(payload_us, kafka_time.cast(pa.int64()))
    )
    decoded[time.field] = payload_us
    message_checks = {"empty_message": pc.is_null(value), "too_large": too_large}
    time_checks = {
        "time_too_old": pc.less(event_us, now_us - rules.max_past_s * 1_000_000),
        "time_in_future": pc.greater(event_us, now_us + rules.max_future_s * 1_000_000),
    }
    checks: list[tuple[pa.Array, str]] = []
    for rule in found.rules:
        failed = message_checks.get(rule.kind, time_checks.get(rule.kind))
        if failed is None:
            failed = broken(rule, decoded.get(rule.field), typed.get(rule.field))
        if failed is not None:
            checks.append((failed, rule.reason))
    reason = first_reason(checks, n)
    rejected = pc.is_valid(reason)

    source_id = typed[model.id] if model.id is not None else pa.nulls(n, pa.int64())
    columns = [
        event_us.cast(TIMESTAMP),
        *[typed[name] for name in model.event_fields],
        *([pa.array(kept, pa.string())] if found.keep else []),
        raw.column("topic"),
        raw.column("partition"),
        raw.column("offset"),
        source_id,
        kafka_time,
        reason,
        pc.if_else(rejected, raw.column("key"), pa.scalar(None, pa.binary())),
        pc.if_else(rejected, _kept_values(value, too_large), pa.scalar(None, pa.binary())),
    ]
    validated = pa.RecordBatch.from_arrays(columns, schema=found.schema)
    left = pc.and_(left, pc.invert(too_large))  # decided here, whatever it holds
    if not left.true_count:
        return Checked(validated, raw.slice(0, 0))
    return Checked(validated.filter(pc.invert(left)), raw.filter(left))
