"""Explicit schemas: the Kafka message, the events row, the dead letter."""

from pyspark.sql.types import (
    BinaryType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

LAB_FIELDS = ("customer_id", "event_type", "country", "browser", "device_id", "session_id")
ID_FIELDS = ("customer_id", "device_id", "session_id")
TEXT_FIELDS = ("event_type", "country", "browser")

# The lab's six fields, in the producer's order, plus optional event_time and event_id, typed.
# event_time is text: ISO-8601 or epoch milliseconds are both accepted downstream.
MESSAGE_SCHEMA = StructType(
    [
        StructField("customer_id", LongType()),
        StructField("event_type", StringType()),
        StructField("country", StringType()),
        StructField("browser", StringType()),
        StructField("device_id", LongType()),
        StructField("session_id", LongType()),
        StructField("event_time", StringType()),
        StructField("event_id", LongType()),
    ]
)

# The same fields all read as text, so that validation can say which rule a value breaks
# (a JSON number and a numeric string both arrive as digits); unknown fields are ignored.
PAYLOAD_SCHEMA = StructType(
    [StructField(f.name, StringType()) for f in MESSAGE_SCHEMA.fields]
    + [StructField("_corrupt_record", StringType())]
)

# Columns the ingest job writes into `events` (event_id and ingested_at are the table's defaults).
EVENT_COLUMNS = (
    "event_time",
    "customer_id",
    "event_type",
    "country",
    "browser",
    "device_id",
    "session_id",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "source_event_id",
)

# What validation gives per record (`transforms.validate` in Spark, `arrow_validation` in the
# Python worker): the events columns, the Kafka timestamp, the first rule broken (null when
# valid) and, for rejected records only, the raw key and value.
VALIDATED_SCHEMA = StructType(
    [
        StructField("event_time", TimestampType()),
        StructField("customer_id", LongType()),
        StructField("event_type", StringType()),
        StructField("country", StringType()),
        StructField("browser", StringType()),
        StructField("device_id", LongType()),
        StructField("session_id", LongType()),
        StructField("kafka_topic", StringType()),
        StructField("kafka_partition", IntegerType()),
        StructField("kafka_offset", LongType()),
        StructField("source_event_id", LongType()),
        StructField("kafka_timestamp", TimestampType()),
        StructField("reject_reason", StringType()),
        StructField("raw_key", BinaryType()),
        StructField("raw_value", BinaryType()),
    ]
)
assert tuple(f.name for f in VALIDATED_SCHEMA.fields[: len(EVENT_COLUMNS)]) == EVENT_COLUMNS

# What each sink task returns (`sink.write_and_route`): its dead letters (kind "dead", with the
# reason), the records left to Spark's rules (kind "undecided", raw) and one statistics row per
# Kafka partition (kind "stats": counts, offsets, oldest and newest Kafka timestamp).
ROUTED_SCHEMA = StructType(
    [
        StructField("kind", StringType()),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("kafka_timestamp", TimestampType()),
        StructField("raw_key", BinaryType()),
        StructField("raw_value", BinaryType()),
        StructField("reason", StringType()),
        *[
            StructField(name, LongType())
            for name in ("rows_in", "written", "duplicates", "dead", "db_rejected", "undecided")
        ],
        StructField("first_offset", LongType()),
        StructField("last_offset", LongType()),
        StructField("oldest", TimestampType()),
        StructField("newest", TimestampType()),
        StructField("attempts", IntegerType()),
        StructField("seconds", DoubleType()),
    ]
)

# The dead-letter store's row (`dead_letters`): the raw record, its Kafka coordinates, the batch,
# the query, the reason and when it was stored and replayed.
DEAD_LETTER_SCHEMA = StructType(
    [
        StructField("raw_key", BinaryType()),
        StructField("raw_value", BinaryType()),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("kafka_timestamp", TimestampType()),
        StructField("batch_id", LongType()),
        StructField("query_name", StringType()),
        StructField("reason", StringType()),
        StructField("dead_lettered_at", TimestampType()),
        StructField("replayed_at", TimestampType()),
    ]
)
