import json

from chispa import assert_df_equality
from pyspark.sql import Row

from clickstream_pipeline.smoke import parse_smoke


def test_lab_messages_parse_into_typed_columns(spark):
    lab = {
        "customer_id": 70,
        "event_type": "scroll",
        "country": "United States",
        "browser": "opera",
        "device_id": 6677,
        "session_id": 11893,
    }
    raw = spark.createDataFrame(
        [
            Row(value=json.dumps(lab).encode(), partition=1, offset=42),
            Row(value=b"{not json", partition=0, offset=7),
        ],
        "value binary, partition int, offset long",
    )
    expected = spark.createDataFrame(
        [
            ("r1", 1, 42, 70, "scroll", "United States", "opera", 6677, 11893),
            ("r1", 0, 7, None, None, None, None, None, None),
        ],
        "run_id string, kafka_partition int, kafka_offset long, customer_id long, "
        "event_type string, country string, browser string, device_id long, session_id long",
    )
    assert_df_equality(parse_smoke(raw, "r1"), expected, ignore_nullable=True)
