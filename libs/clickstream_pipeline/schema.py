"""Explicit schemas: the Kafka message, the events row, the dead letter."""

from pyspark.sql.types import LongType, StringType, StructField, StructType

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
