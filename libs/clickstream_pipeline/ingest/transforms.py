"""Parse, validate and enrich Kafka records: pure `DataFrame -> DataFrame` functions.

Input is what Spark's Kafka source gives (`key`, `value`, `topic`, `partition`, `offset`,
`timestamp`). Every record comes out either as an `events` row or as a dead letter with the
name of the first rule it broke; nothing is dropped.
"""

from __future__ import annotations

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from clickstream_pipeline.core.model import CONTROL_CHARS_PATTERN as CONTROL_CHARS
from clickstream_pipeline.core.model import PROPERTIES, EventModel, FieldSpec
from clickstream_pipeline.core.schema import payload_schema
from clickstream_pipeline.ingest.rules import TOO_LARGE_KEPT_BYTES, Rule, Rules

__all__ = ["TOO_LARGE_KEPT_BYTES", "Rules", "to_events", "validate"]

INTEGER = r"^-?[0-9]+$"
NUMBER = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
EPOCH_MILLIS = r"^[0-9]{10,15}$"
DUPLICATE_KEYS = "spark.sql.variant.allowDuplicateKeys"
TIME = "_event_time"  # the event time while validating; the model names its column
SPARK_TYPES = {"bigint": "bigint", "integer": "int", "double": "double", "boolean": "boolean"}


def with_payload(raw: DataFrame, rules: Rules | None = None) -> DataFrame:
    """Adds `value_text` (the value as UTF-8 text) and `p` (the parsed payload, all text);
    both null for a value over `rules.max_message_bytes` (never parsed)."""
    rules = rules or Rules()
    text = F.when(
        F.length(F.col("value")) <= rules.max_message_bytes, F.col("value").cast("string")
    )
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt_record"}
    return raw.withColumn("value_text", text).withColumn(
        "p", F.from_json(F.col("value_text"), payload_schema(rules.model), options)
    )


def payload_event_time(model: EventModel) -> Column:
    """The event time from the payload in the model's formats; null when absent or bad."""
    return parsed_time(F.col(f"p.{model.time.field}"), model.time.formats)


def parsed_time(value: Column, formats: tuple[str, ...] = ("iso8601", "epoch_millis")) -> Column:
    """A time written in `formats` (ISO-8601 text, epoch milliseconds); null when it is not."""
    millis = value.rlike(EPOCH_MILLIS)
    parsed = F.timestamp_millis(value.try_cast("bigint")) if "epoch_millis" in formats else None
    if "iso8601" not in formats:
        return F.when(millis, parsed)
    iso = F.try_to_timestamp(value)
    return iso if parsed is None else F.when(millis, parsed).otherwise(iso)


def with_event_time(df: DataFrame, model: EventModel) -> DataFrame:
    """Adds `_event_time`: the payload's time when given, else the Kafka record's (never the
    database clock)."""
    payload = payload_event_time(model)
    time = payload if model.time.fallback is None else F.coalesce(payload, F.col("timestamp"))
    return df.withColumn(TIME, time)


def typed(name: str, spec: FieldSpec) -> Column:
    """A field's value as its column holds it: cast, text trimmed and folded as the model says."""
    value = F.col(f"p.{name}")
    if spec.type == "numeric":
        return value.try_cast(f"decimal({spec.precision},{spec.scale})")
    if spec.type == "timestamp":
        return parsed_time(value)
    if spec.type == "jsonb":
        return value  # an object's or array's JSON text (Spark's reader writes it compactly)
    if spec.type != "text":
        return value.try_cast(SPARK_TYPES[spec.type])
    if spec.trim:
        value = F.trim(value)
    return F.lower(value) if spec.lower else value


def broken(rule: Rule, rules: Rules) -> Column:
    """Whether a record breaks `rule` (null counts as not)."""
    spec = rule.spec
    if rule.kind == "empty_message":
        return F.col("value").isNull()
    if rule.kind == "too_large":
        return F.length(F.col("value")) > rules.max_message_bytes
    if rule.kind == "invalid_utf8":
        return ~F.is_valid_utf8(F.col("value_text"))
    if rule.kind == "malformed_json":
        return F.col("p").isNull() | F.col("p._corrupt_record").isNotNull()
    if rule.kind == "unknown_field":
        known = F.array(*[F.lit(n) for n in rules.model.payload_fields])
        return F.size(F.array_except(F.json_object_keys(F.col("value_text")), known)) > 0
    value = F.col(f"p.{rule.field}")
    if rule.kind in ("missing", "missing_time"):
        return value.isNull()
    if rule.kind in ("bad_time", "time_too_old", "time_in_future"):
        return _time_broken(rule, rules)
    assert spec is not None, rule
    number = typed(rule.field, spec)
    # Valid rows pay for one cast; the regex runs only where the cast failed (`&` short-circuits).
    failed = value.isNotNull() & number.isNull()
    if rule.kind == "not_integer":
        return failed & ~value.rlike(INTEGER)
    if rule.kind == "not_number" and spec.type == "numeric":
        return failed & ~value.rlike(NUMBER)
    if rule.kind == "not_number":
        return failed | F.isnan(number) | (F.abs(number) == float("inf"))
    if rule.kind == "not_timestamp":
        return failed
    if rule.kind == "not_json":
        whole = value.startswith("{") | value.startswith("[")
        return value.isNotNull() & (~whole | F.try_parse_json(value).isNull())
    if rule.kind == "out_of_range":
        outside = failed if spec.type != "double" else F.lit(False)
        low, high = spec.bounds()  # an integer's own range: its cast failed
        if low is not None:
            outside = outside | (number < low)
        if high is not None:
            outside = outside | (number > high)
        return outside
    if rule.kind == "not_boolean":
        return value.isNotNull() & ~value.isin("true", "false")
    if rule.kind == "empty":
        return F.trim(value) == ""
    if rule.kind == "too_long":
        return F.length(value) > (spec.max_length or 0)
    if rule.kind == "control_chars":
        return value.rlike(CONTROL_CHARS)
    if rule.kind == "not_text":
        return value.startswith("{") | value.startswith("[")
    if rule.kind == "not_allowed":
        return ~number.isin(*(spec.allowed or ()))
    if rule.kind == "not_matching":
        return ~number.rlike(f"^(?:{spec.pattern})$")
    raise ValueError(f"no Spark check for rule kind {rule.kind!r}")


def _time_broken(rule: Rule, rules: Rules) -> Column:
    if rule.kind == "bad_time":
        given = F.col(f"p.{rule.field}").isNotNull()
        return given & payload_event_time(rules.model).isNull()
    if rule.kind == "time_too_old":
        since = F.current_timestamp() - F.expr(f"INTERVAL {rules.max_past_s} SECONDS")
        return F.col(TIME) < since
    until = F.current_timestamp() + F.expr(f"INTERVAL {rules.max_future_s} SECONDS")
    return F.col(TIME) > until


def with_reject_reason(df: DataFrame, rules: Rules) -> DataFrame:
    """Adds `reject_reason`: the first rule the record breaks, or null when it is valid."""
    checks = [F.when(broken(rule, rules), F.lit(rule.reason)) for rule in rules.ordered()]
    return df.withColumn("reject_reason", F.coalesce(*checks))


def unknown_fields(model: EventModel) -> Column:
    """The fields of the message the model does not name, as a JSON object with their values
    as sent (null when there are none)."""
    known = F.array(*[F.lit(n) for n in (*model.payload_fields, "_corrupt_record")])
    fields = F.try_parse_json(F.col("value_text")).try_cast("map<string,variant>")
    unknown = F.map_filter(fields, lambda key, _: ~F.array_contains(known, key))
    return F.when(F.size(unknown) > 0, F.to_json(unknown))


def validate(raw: DataFrame, rules: Rules) -> DataFrame:
    """Kafka rows -> flat validated rows (`schema.validated_schema`), in one projection.

    Valid rows carry the typed, normalised events columns and a null `reject_reason`; invalid
    rows carry their reason and their raw key and value (null for valid rows, to keep the
    batch small). The JSON is parsed once per record.
    """
    model = rules.model
    if model.unknown_fields == "keep":
        # a field named twice keeps its last value in `properties`, as in the payload's reader
        raw.sparkSession.conf.set(DUPLICATE_KEYS, "true")
    checked = (
        raw.transform(lambda df: with_payload(df, rules))
        .transform(lambda df: with_event_time(df, model))
        .transform(lambda df: with_reject_reason(df, rules))
    )
    rejected = F.col("reject_reason").isNotNull()
    too_large = F.col("reject_reason") == "too_large"
    kept_value = F.when(too_large, F.substring("value", 1, TOO_LARGE_KEPT_BYTES)).otherwise(
        F.col("value")
    )
    source_id = F.lit(None) if model.id is None else F.col(f"p.{model.id}")
    return checked.select(
        F.col(TIME).alias(model.time.field),
        *[typed(name, model.fields[name]).alias(name) for name in model.event_fields],
        *([unknown_fields(model).alias(PROPERTIES)] if model.unknown_fields == "keep" else []),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        source_id.try_cast("bigint").alias("source_event_id"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("reject_reason"),
        F.when(rejected, F.col("key")).alias("raw_key"),
        F.when(rejected, kept_value).alias("raw_value"),
    )


def to_events(validated: DataFrame, model: EventModel | None = None) -> DataFrame:
    """Valid records as `events` rows: the model's columns typed and normalised, plus source."""
    columns = (model or Rules().model).event_columns
    return validated.filter(F.col("reject_reason").isNull()).select(*columns)
