"""The metrics' pure parts: Kafka lag from a progress event's source, bounded reason labels."""

from clickstream_pipeline.ingest.openmetrics import kafka_lag, reason_label


def test_lag_is_latest_minus_end_per_partition():
    source = {
        "startOffset": {"clicks": {"0": 10, "1": 5}},
        "endOffset": {"clicks": {"0": 40, "1": 5}},
        "latestOffset": {"clicks": {"0": 100, "1": 5, "2": 7}},
    }
    assert kafka_lag(source) == {("clicks", "0"): 60, ("clicks", "1"): 0, ("clicks", "2"): 7}


def test_lag_is_never_negative():
    # a partition's end read past what the broker reported last (a topic being recreated)
    assert kafka_lag({"endOffset": {"t": {"0": 9}}, "latestOffset": {"t": {"0": 5}}}) == {
        ("t", "0"): 0
    }


def test_lag_of_a_source_without_kafka_offsets_is_empty():
    assert kafka_lag({"endOffset": 17, "latestOffset": 20}) == {}
    assert kafka_lag({}) == {}


def test_reason_labels_leave_out_the_database_message():
    assert reason_label("missing_customer_id") == "missing_customer_id"
    assert reason_label('db_rejected: value too long for type character varying(5) "x"') == (
        "db_rejected"
    )
