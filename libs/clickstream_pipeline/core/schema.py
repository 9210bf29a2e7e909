"""Explicit schemas: the Kafka message, the validated row, the sink's output, the dead letter.
The field and column names alone (no Spark needed) are in `fields`."""

from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    DataType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from clickstream_pipeline.core.fields import EVENT_COLUMNS, ID_FIELDS, LAB_FIELDS, TEXT_FIELDS
from clickstream_pipeline.core.model import LAB, PROPERTIES, EventModel, FieldSpec

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "EVENT_COLUMNS",
    "ID_FIELDS",
    "LAB_FIELDS",
    "PAYLOAD_SCHEMA",
    "ROUTED_SCHEMA",
    "TEXT_FIELDS",
    "VALIDATED_SCHEMA",
    "payload_schema",
    "validated_schema",
]

SPARK_TYPES: dict[str, DataType] = {
    "bigint": LongType(),
    "integer": IntegerType(),
    "double": DoubleType(),
    "boolean": BooleanType(),
    "text": StringType(),
    "timestamp": TimestampType(),
    "jsonb": StringType(),  # the JSON text
}


def spark_type(spec: FieldSpec) -> DataType:
    """A field's type once validated."""
    if spec.type == "numeric":
        return DecimalType(spec.precision, spec.scale)
    return SPARK_TYPES[spec.type]


def _kafka_record_fields() -> list[StructField]:
    """A Kafka record as the dead letters keep it: raw key and value, coordinates, timestamp."""
    return [
        StructField("raw_key", BinaryType()),
        StructField("raw_value", BinaryType()),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("kafka_timestamp", TimestampType()),
    ]


def payload_schema(model: EventModel) -> StructType:
    """The model's fields and event time all read as text, so that validation can say which
    rule a value breaks (a JSON number and a numeric string both arrive as digits)."""
    names = [*model.payload_fields, "_corrupt_record"]
    return StructType([StructField(name, StringType()) for name in names])


def validated_schema(model: EventModel) -> StructType:
    """What validation gives per record (`transforms.validate` in Spark, `arrow_validation` in
    the Python worker): the events columns, the Kafka timestamp, the first rule broken (null
    when valid) and, for rejected records only, the raw key and value."""
    fields = [StructField(n, spark_type(model.fields[n])) for n in model.event_fields]
    if model.unknown_fields == "keep":
        fields.append(StructField(PROPERTIES, StringType()))  # a JSON object's text
    schema = StructType(
        [
            StructField(model.time.field, TimestampType()),
            *fields,
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
    assert tuple(schema.names[: len(model.event_columns)]) == model.event_columns
    return schema


PAYLOAD_SCHEMA = payload_schema(LAB)
VALIDATED_SCHEMA = validated_schema(LAB)

# What each sink task returns (`sink.write_and_route`): its dead letters (kind "dead", with the
# reason), the records left to Spark's rules (kind "undecided", raw), one statistics row per
# Kafka partition (kind "stats": counts, offsets, oldest and newest Kafka timestamp) and one
# row per customer and partition written (kind "tenant": customer_id, rows_in, oldest, newest).
ROUTED_SCHEMA = StructType(
    [
        StructField("kind", StringType()),
        *_kafka_record_fields(),
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
        StructField("customer_id", LongType()),
    ]
)

# The dead-letter store's row (`dead_letters`): the raw record, its Kafka coordinates, the batch,
# the query, the reason and when it was stored and replayed.
DEAD_LETTER_SCHEMA = StructType(
    [
        *_kafka_record_fields(),
        StructField("batch_id", LongType()),
        StructField("query_name", StringType()),
        StructField("reason", StringType()),
        StructField("dead_lettered_at", TimestampType()),
        StructField("replayed_at", TimestampType()),
    ]
)
