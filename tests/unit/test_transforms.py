"""Parse, validate and enrich: every record is either an events row or a reasoned dead letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from chispa import assert_df_equality

from clickstream_pipeline.ingest.transforms import Rules, to_events, validate
from tests.unit.models import lab_with

NOW = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
LAB = {
    "customer_id": 70,
    "event_type": "scroll",
    "country": "United States",
    "browser": "opera",
    "device_id": 6677,
    "session_id": 11893,
}
KAFKA_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
)


def kafka_rows(spark, values: list[bytes | None], timestamp: datetime = NOW):
    rows = [(b"70", v, "clickstream", 0, i, timestamp) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def message(**changes) -> bytes:
    body = {**LAB, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def reasons(spark, values: list[bytes | None], rules: Rules | None = None) -> list[str | None]:
    validated = validate(kafka_rows(spark, values), rules or Rules())
    return [r.reject_reason for r in validated.orderBy("kafka_offset").collect()]


def test_the_labs_message_becomes_an_events_row(spark):
    events = to_events(validate(kafka_rows(spark, [message()]), Rules()))
    expected = spark.createDataFrame(
        [
            (
                NOW,
                70,
                6677,
                11893,
                "scroll",
                "United States",
                "opera",
                None,
                "clickstream",
                0,
                0,
                None,
            )
        ],
        "event_time timestamp, customer_id long, device_id long, session_id long, "
        "event_type string, country string, browser string, properties string, "
        "kafka_topic string, "
        "kafka_partition int, kafka_offset long, source_event_id long",
    )
    assert_df_equality(events, expected, ignore_nullable=True)


def test_payload_time_wins_over_kafka_time_and_both_formats_parse(spark):
    iso = message(event_time="2026-11-26T09:59:58.250Z", event_id=5)
    millis = message(
        event_time=str(int(datetime(2026, 11, 26, 9, 59, tzinfo=UTC).timestamp() * 1000))
    )
    at = datetime(2026, 11, 26, 10, 0)
    rules = Rules(lab_with(max_past="20000d", max_future="20000d"))
    rows = to_events(validate(kafka_rows(spark, [iso, millis, message()], at), rules)).collect()
    assert [r.event_time for r in rows] == [
        datetime(2026, 11, 26, 9, 59, 58, 250000),
        datetime(2026, 11, 26, 9, 59),
        at,
    ]
    assert [r.source_event_id for r in rows] == [5, None, None]


def test_event_type_and_browser_are_normalised_other_text_kept_byte_exact(spark):
    awkward = "Côte d'Ivoire \"quoted\" \\ 😀 '); DROP TABLE events; --"
    (row,) = to_events(
        validate(
            kafka_rows(spark, [message(event_type=" Click ", browser="FireFox", country=awkward)]),
            Rules(),
        )
    ).collect()
    assert (row.event_type, row.browser, row.country) == ("click", "firefox", awkward)


def test_unknown_fields_are_kept_as_sent_and_numeric_strings_accepted(spark):
    values = [message(extra={"x": 1, "y": [1, 2.5, None]}, customer_id="71"), message()]
    rows = validate(kafka_rows(spark, values), Rules()).orderBy("kafka_offset").collect()
    assert [r.reject_reason for r in rows] == [None, None]
    assert json.loads(rows[0].properties) == {"extra": {"x": 1, "y": [1, 2.5, None]}}
    assert rows[1].properties is None  # nothing unknown, nothing kept


# One record per rule (checked together: one Spark job instead of one per case).
RULE_CASES = [
    (None, "empty_message"),
    (b"\xff\xfe{}", "invalid_utf8"),
    (b"{broken", "malformed_json"),
    (b"[1, 2]", "malformed_json"),
    (b"", "malformed_json"),
    (message(customer_id=...), "missing_customer_id"),
    (message(device_id="abc"), "not_integer_device_id"),
    (message(session_id=1.5), "not_integer_session_id"),
    (message(customer_id=99999999999999999999), "out_of_range_customer_id"),
    (message(customer_id=0), "out_of_range_customer_id"),
    (message(country=...), "missing_country"),
    (message(browser="   "), "empty_browser"),
    (message(country="x" * 257), "too_long_country"),
    (message(event_type="cl\u0000ick"), "control_chars_event_type"),
    (message(browser={"name": "opera"}), "not_text_browser"),
    (message(event_id="seven"), "not_integer_event_id"),
    (message(event_time="yesterday"), "bad_event_time"),
    (message(event_time=(NOW - timedelta(days=3)).isoformat() + "Z"), "event_time_too_old"),
    (message(event_time=(NOW + timedelta(hours=1)).isoformat() + "Z"), "event_time_in_future"),
]


def test_each_rule_names_itself(spark):
    got = reasons(spark, [value for value, _ in RULE_CASES])
    assert list(zip(got, [reason for _, reason in RULE_CASES], strict=True)) == [
        (reason, reason) for _, reason in RULE_CASES
    ]


def test_first_broken_rule_wins_and_bounds_come_from_rules(spark):
    assert reasons(spark, [message(customer_id=..., country=...)]) == ["missing_customer_id"]
    assert reasons(spark, [message(country="x" * 20)], Rules(lab_with(max_length=10))) == [
        "too_long_country"
    ]


def test_every_record_is_an_event_or_a_dead_letter_with_its_source(spark):
    values = [message(), b"{broken", message(device_id="x"), message(country="ok")]
    validated = validate(kafka_rows(spark, values), Rules())
    events = to_events(validated).collect()
    dead = validated.filter("reject_reason IS NOT NULL").orderBy("kafka_offset").collect()
    assert len(events) + len(dead) == len(values)
    assert [(d.kafka_offset, d.reject_reason, bytes(d.raw_value)) for d in dead] == [
        (1, "malformed_json", b"{broken"),
        (2, "not_integer_device_id", values[2]),
    ]
    assert {e.kafka_offset for e in events} == {0, 3}
