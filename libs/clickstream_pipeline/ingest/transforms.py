"""Parse, validate and enrich Kafka records: pure `DataFrame -> DataFrame` functions.

Input is what Spark's Kafka source gives (`key`, `value`, `topic`, `partition`, `offset`,
`timestamp`). Every record comes out either as an `events` row or as a dead letter with the
name of the first rule it broke; nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from clickstream_pipeline.core.schema import (
    EVENT_COLUMNS,
    ID_FIELDS,
    PAYLOAD_SCHEMA,
    TEXT_FIELDS,
)

INTEGER = r"^-?[0-9]+$"
EPOCH_MILLIS = r"^[0-9]{10,15}$"
CONTROL_CHARS = r"[\x00-\x1F\x7F]"
# A message over the maximum size is a dead letter ("too_large") keeping only its first bytes.
TOO_LARGE_KEPT_BYTES = 64 * 1024


@dataclass(frozen=True)
class Rules:
    """Validation bounds (from config `[ingest]`)."""

    max_text_length: int = 256
    max_past_s: int = 2 * 24 * 3600
    max_future_s: int = 15 * 60
    max_message_bytes: int = 1 << 20


def with_payload(raw: DataFrame, max_bytes: int | None = None) -> DataFrame:
    """Adds `value_text` (the value as UTF-8 text) and `p` (the parsed payload, all text);
    both null for a value over `max_bytes` (never parsed)."""
    text = F.col("value").cast("string")
    if max_bytes is not None:
        text = F.when(F.length(F.col("value")) <= max_bytes, text)
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt_record"}
    return raw.withColumn("value_text", text).withColumn(
        "p", F.from_json(F.col("value_text"), PAYLOAD_SCHEMA, options)
    )


def _id_rules(field: str, optional: bool = False) -> list[tuple[Column, str]]:
    # Valid rows pay for one cast; the regex runs only where the cast failed (`&` short-circuits).
    value = F.col(f"p.{field}")
    number = value.try_cast("bigint")
    failed = value.isNotNull() & number.isNull()
    rules = [] if optional else [(value.isNull(), f"missing_{field}")]
    return [
        *rules,
        (failed & ~value.rlike(INTEGER), f"not_integer_{field}"),
        (failed | (number <= 0), f"out_of_range_{field}"),
    ]


def _text_rules(field: str, max_length: int) -> list[tuple[Column, str]]:
    value = F.col(f"p.{field}")
    return [
        (value.isNull(), f"missing_{field}"),
        (F.trim(value) == "", f"empty_{field}"),
        (F.length(value) > max_length, f"too_long_{field}"),
        (value.rlike(CONTROL_CHARS), f"control_chars_{field}"),
        (value.startswith("{") | value.startswith("["), f"not_text_{field}"),
    ]


def payload_event_time() -> Column:
    """`event_time` from the payload: epoch milliseconds or ISO-8601; null when absent/bad."""
    value = F.col("p.event_time")
    millis = F.timestamp_millis(value.try_cast("bigint"))
    return F.when(value.rlike(EPOCH_MILLIS), millis).otherwise(F.try_to_timestamp(value))


def with_event_time(df: DataFrame) -> DataFrame:
    """The payload's time when given, else the Kafka record's (never the database clock)."""
    return df.withColumn("event_time", F.coalesce(payload_event_time(), F.col("timestamp")))


def with_reject_reason(df: DataFrame, rules: Rules) -> DataFrame:
    """Adds `reject_reason`: the first rule the record breaks, or null when it is valid."""
    checks: list[tuple[Column, str]] = [
        (F.col("value").isNull(), "empty_message"),
        (F.length(F.col("value")) > rules.max_message_bytes, "too_large"),
        (~F.is_valid_utf8(F.col("value_text")), "invalid_utf8"),
        (F.col("p").isNull() | F.col("p._corrupt_record").isNotNull(), "malformed_json"),
    ]
    for field in ID_FIELDS:
        checks += _id_rules(field)
    for field in TEXT_FIELDS:
        checks += _text_rules(field, rules.max_text_length)
    checks += _id_rules("event_id", optional=True)
    checks += [
        (F.col("p.event_time").isNotNull() & payload_event_time().isNull(), "bad_event_time"),
        (
            F.col("event_time")
            < F.current_timestamp() - F.expr(f"INTERVAL {rules.max_past_s} SECONDS"),
            "event_time_too_old",
        ),
        (
            F.col("event_time")
            > F.current_timestamp() + F.expr(f"INTERVAL {rules.max_future_s} SECONDS"),
            "event_time_in_future",
        ),
    ]
    reason = F.coalesce(*[F.when(failed, F.lit(name)) for failed, name in checks])
    return df.withColumn("reject_reason", reason)


def validate(raw: DataFrame, rules: Rules) -> DataFrame:
    """Kafka rows -> flat validated rows (`VALIDATED_COLUMNS`), in one projection.

    Valid rows carry the typed, normalised events columns and a null `reject_reason`; invalid
    rows carry their reason and their raw key and value (null for valid rows, to keep the
    batch small). The JSON is parsed once per record.
    """
    checked = (
        raw.transform(lambda df: with_payload(df, rules.max_message_bytes))
        .transform(with_event_time)
        .transform(lambda df: with_reject_reason(df, rules))
    )
    rejected = F.col("reject_reason").isNotNull()
    too_large = F.col("reject_reason") == "too_large"
    kept_value = F.when(too_large, F.substring("value", 1, TOO_LARGE_KEPT_BYTES)).otherwise(
        F.col("value")
    )
    return checked.select(
        F.col("event_time"),
        F.col("p.customer_id").try_cast("bigint").alias("customer_id"),
        F.lower(F.trim(F.col("p.event_type"))).alias("event_type"),
        F.col("p.country").alias("country"),
        F.lower(F.trim(F.col("p.browser"))).alias("browser"),
        F.col("p.device_id").try_cast("bigint").alias("device_id"),
        F.col("p.session_id").try_cast("bigint").alias("session_id"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("p.event_id").try_cast("bigint").alias("source_event_id"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("reject_reason"),
        F.when(rejected, F.col("key")).alias("raw_key"),
        F.when(rejected, kept_value).alias("raw_value"),
    )


def to_events(validated: DataFrame) -> DataFrame:
    """Valid records as `events` rows: the lab's columns typed and normalised, plus source."""
    return validated.filter(F.col("reject_reason").isNull()).select(*EVENT_COLUMNS)
