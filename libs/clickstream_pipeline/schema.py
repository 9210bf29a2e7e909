"""Explicit schemas: the Kafka message as the lab's producer sends it (plus optional fields)."""

from pyspark.sql.types import LongType, StringType, StructField, StructType

# The lab's six fields, in the producer's order, plus optional event_time and event_id.
# event_time is read as text: ISO-8601 or epoch milliseconds are both accepted downstream.
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

LAB_FIELDS = ("customer_id", "event_type", "country", "browser", "device_id", "session_id")
