"""The validation rules in the Python worker: raw Kafka Arrow batches -> validated rows.

The same rules as `transforms.validate` (the reference, run by Spark), for the records whose
meaning is plain: a value of at most `PLAIN_MAX_BYTES` starting with `{` that msgspec decodes
strictly, ids as JSON integers or digit strings, text as JSON strings (event_type and browser
in ASCII), event_time as epoch milliseconds or `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM)`.
A value over `Rules.max_message_bytes` is decided here whatever it holds: a dead letter
("too_large") keeping its first `TOO_LARGE_KEPT_BYTES`. Any other record is *undecided* and
handed back raw for Spark's rules to judge: where Spark's JSON reader is more lenient than
msgspec (NaN, single quotes, trailing text) or a cast is subtle (signs, spaces, other time
formats, non-ASCII case mapping), Spark decides, so a record's fate never depends on the path
it took.

Per batch: one msgspec decode per record, then Arrow kernels over whole columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.pandas.types import to_arrow_schema

from clickstream_pipeline.core.schema import ID_FIELDS, TEXT_FIELDS, VALIDATED_SCHEMA
from clickstream_pipeline.ingest.transforms import CONTROL_CHARS, TOO_LARGE_KEPT_BYTES, Rules
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
VALIDATED_ARROW_SCHEMA = to_arrow_schema(VALIDATED_SCHEMA)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = datetime.resolution


class Payload(msgspec.Struct):
    """The fields the rules read; any others are skipped (and must still be valid JSON)."""

    customer_id: int | str | None = None
    event_type: str | None = None
    country: str | None = None
    browser: str | None = None
    device_id: int | str | None = None
    session_id: int | str | None = None
    event_time: int | str | None = None
    event_id: int | str | None = None
    # Spark's reader fills its corrupt-record column from a field of that name
    corrupt_record: msgspec.Raw | msgspec.UnsetType = msgspec.field(
        default=msgspec.UNSET, name="_corrupt_record"
    )


_decode = msgspec.json.Decoder(Payload).decode
_NO_PAYLOAD = Payload()


@dataclass(frozen=True)
class Checked:
    validated: pa.RecordBatch  # VALIDATED_ARROW_SCHEMA, the decided records
    undecided: pa.RecordBatch  # the other records as they came (the input's columns)


def _decoded(values: list[bytes | None]) -> tuple[list[Payload], list[bool]]:
    """Each value's payload, and whether it is left to Spark (an empty message is decided)."""
    payloads: list[Payload] = []
    undecided: list[bool] = []
    for value in values:
        payload = _NO_PAYLOAD
        if value is not None:
            if len(value) <= PLAIN_MAX_BYTES and value[:1] == b"{":
                try:
                    payload = _decode(value)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    value = b""
                else:
                    if payload.corrupt_record is not msgspec.UNSET:
                        value = b""
            else:
                value = b""
        payloads.append(payload)
        undecided.append(value == b"")
    return payloads, undecided


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


def _event_time_us(value: int | str | None) -> tuple[int | None, bool]:
    if value is None:
        return None, False
    text = str(value)
    if EPOCH_MILLIS.fullmatch(text):
        return int(text) * 1000, False
    if isinstance(value, str) and re.fullmatch(ISO_TIME, value):
        try:
            return (datetime.fromisoformat(value) - EPOCH) // _MICROSECOND, False
        except ValueError:  # an impossible date (February 30)
            pass
    return None, True


def event_times(values: list[int | str | None]) -> tuple[pa.Array, list[bool] | None]:
    """Payload event times in microseconds since the epoch, and which are not plain."""
    try:
        strings = pa.array(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        strings = None
    if strings is not None and strings.null_count < len(strings):
        plain = pc.match_substring_regex(strings, ISO_TIME)
        if pc.all(plain).as_py():  # all ISO-8601 strings (or absent): parsed by Arrow
            try:
                return pc.cast(strings, TIMESTAMP).cast(pa.int64()), None
            except pa.ArrowInvalid:
                pass
    pairs = [_event_time_us(v) for v in values]
    return pa.array([p[0] for p in pairs], pa.int64()), [p[1] for p in pairs]


def _id_checks(name: str, ids: pa.Array, optional: bool = False) -> list[tuple[pa.Array, str]]:
    missing = [] if optional else [(pc.is_null(ids), f"missing_{name}")]
    return [*missing, (pc.less_equal(ids, 0), f"out_of_range_{name}")]


def _text_checks(name: str, text: pa.Array, max_length: int) -> list[tuple[pa.Array, str]]:
    return [
        (pc.is_null(text), f"missing_{name}"),
        (pc.equal(pc.utf8_trim(text, " "), ""), f"empty_{name}"),
        (pc.greater(pc.utf8_length(text), max_length), f"too_long_{name}"),
        (pc.match_substring_regex(text, CONTROL_CHARS), f"control_chars_{name}"),
        (pc.or_(pc.starts_with(text, "{"), pc.starts_with(text, "[")), f"not_text_{name}"),
    ]


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


def check_batch(raw: pa.RecordBatch, rules: Rules, now_us: int) -> Checked:
    """Validate Kafka rows (`key`, `value`, `topic`, `partition`, `offset`, `timestamp`);
    `now_us` (microseconds since the epoch) is the batch's clock for the event-time bounds."""
    n = raw.num_rows
    value = raw.column("value")
    sizes = pc.binary_length(value)
    too_large = pc.fill_null(pc.greater(sizes, rules.max_message_bytes), False)
    long = pc.greater(sizes, PLAIN_MAX_BYTES)
    if long.true_count:  # left to Spark without copying them into Python objects
        payloads, not_decoded = _decoded(
            pc.if_else(long, pa.scalar(b"", value.type), value).to_pylist()
        )
    else:
        payloads, not_decoded = _decoded(value.to_pylist())
    left = pa.array(not_decoded, pa.bool_())

    def field(name: str) -> list[int | str | None]:
        return [getattr(p, name) for p in payloads]

    def note(not_plain: list[bool] | pa.Array | None) -> None:
        nonlocal left
        if not_plain is not None:
            mask = not_plain if isinstance(not_plain, pa.Array) else pa.array(not_plain, pa.bool_())
            left = pc.or_(left, mask)

    ids: dict[str, pa.Array] = {}
    for name in (*ID_FIELDS, "event_id"):
        ids[name], not_plain = integers(field(name))
        note(not_plain)
    text = {name: pa.array(field(name), pa.string()) for name in TEXT_FIELDS}
    for name in ("event_type", "browser"):  # Spark's lower() of other text is Java's
        note(pc.invert(pc.fill_null(pc.string_is_ascii(text[name]), True)))
    payload_us, not_plain = event_times(field("event_time"))
    note(not_plain)

    empty = pc.is_null(value)
    kafka_time = raw.column("timestamp").cast(TIMESTAMP)
    event_us = pc.coalesce(payload_us, kafka_time.cast(pa.int64()))
    checks: list[tuple[pa.Array, str]] = [(empty, "empty_message"), (too_large, "too_large")]
    for name in ID_FIELDS:
        checks += _id_checks(name, ids[name])
    for name in TEXT_FIELDS:
        checks += _text_checks(name, text[name], rules.max_text_length)
    checks += _id_checks("event_id", ids["event_id"], optional=True)
    checks += [
        (pc.less(event_us, now_us - rules.max_past_s * 1_000_000), "event_time_too_old"),
        (pc.greater(event_us, now_us + rules.max_future_s * 1_000_000), "event_time_in_future"),
    ]
    reason = first_reason(checks, n)
    rejected = pc.is_valid(reason)

    def normalised(name: str) -> pa.Array:
        return pc.ascii_lower(pc.utf8_trim(text[name], " "))

    columns = [
        event_us.cast(TIMESTAMP),
        ids["customer_id"],
        normalised("event_type"),
        text["country"],
        normalised("browser"),
        ids["device_id"],
        ids["session_id"],
        raw.column("topic"),
        raw.column("partition"),
        raw.column("offset"),
        ids["event_id"],
        kafka_time,
        reason,
        pc.if_else(rejected, raw.column("key"), pa.scalar(None, pa.binary())),
        pc.if_else(rejected, _kept_values(value, too_large), pa.scalar(None, pa.binary())),
    ]
    validated = pa.RecordBatch.from_arrays(columns, schema=VALIDATED_ARROW_SCHEMA)
    left = pc.and_(left, pc.invert(too_large))  # decided here, whatever it holds
    if not left.true_count:
        return Checked(validated, raw.slice(0, 0))
    return Checked(validated.filter(pc.invert(left)), raw.filter(left))
