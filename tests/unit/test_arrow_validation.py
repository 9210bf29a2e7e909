"""The Python worker's rules against Spark's: same verdict and same columns, record by record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from clickstream_pipeline.core.model import LAB as LAB_MODEL
from clickstream_pipeline.core.model import load_model
from clickstream_pipeline.ingest.arrow_validation import check_batch
from clickstream_pipeline.ingest.transforms import Rules, validate
from tests.breaking import WEB_EVENT, breaking_messages
from tests.unit.models import EVERY_TYPE, lab_with
from tests.unit.test_transforms import LAB, RULE_CASES, kafka_rows, message

NOW = datetime.now(UTC).replace(tzinfo=None)
HOUR_AGO = (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
MS_AGO = int((NOW - timedelta(minutes=5)).replace(tzinfo=UTC).timestamp() * 1000)


def raw(text: str) -> bytes:
    return text.encode()


def padded(size: int) -> bytes:
    """A valid lab message of exactly `size` bytes (an extra field pads it)."""
    value = message(pad="x" * (size - len(message(pad=""))))
    assert len(value) == size
    return value


MAX = Rules().max_message_bytes
WEB = load_model("web_analytics")


# Records the worker decides itself (valid ones in every form the producers send, and
# invalid ones of each rule it covers).
PLAIN = [
    message(),
    message(event_id=5),
    message(event_time=HOUR_AGO + ".250Z"),
    message(event_time=HOUR_AGO + "Z"),
    message(event_time=HOUR_AGO + ".123456+02:00"),
    message(event_time=HOUR_AGO + "-05:30"),
    message(event_time=str(MS_AGO)),
    message(event_time=MS_AGO),
    message(customer_id="71", device_id="007"),
    message(event_type=" Click ", browser="FireFox"),
    message(country="Côte d'Ivoire \"quoted\" \\ 😀 '); DROP TABLE events; --"),
    json.dumps({**LAB, "country": "emoji 😀 \u2028"}, ensure_ascii=True).encode(),
    message(country="  spaced  "),
    message(extra={"x": [1, {"y": None}]}, more="text"),
    message(customer_id=None),
    message(customer_id=0),
    message(customer_id=-5),
    message(session_id="0"),
    message(country=""),
    message(browser="   "),
    message(country="x" * 257),
    message(event_type="cl\u0000ick"),
    message(country="tab\there"),
    message(country="[list"),
    message(event_id=0),
    message(event_time=(NOW - timedelta(days=3)).isoformat() + "Z"),
    message(event_time=(NOW + timedelta(hours=1)).isoformat() + "Z"),
    raw(
        '{"customer_id":1,"event_type":"a","country":"b","browser":"c","device_id":2,'
        '"session_id":3,"country":"last wins"}'
    ),
    raw('{"Customer_ID": 5}'),
    raw("{}"),
    None,
    padded(1000),
    padded(MAX + 1),
]
# Records Spark judges (the worker hands them back undecided).
SPARK_DECIDES = [
    message(browser={"name": "opera"}),
    raw('{"customer_id": NaN}'),
    raw("{'customer_id': 70}"),
    raw('{"customer_id": 70} trailing'),
    raw('{"customer_id": 01}'),
    raw('{"_corrupt_record": "x", "customer_id": 1}'),
    raw('{"\\u005fcorrupt_record": 1}'),
    message(customer_id=" 71"),
    message(customer_id="+71"),
    message(customer_id=1.0),
    message(customer_id=True),
    message(customer_id=2**63),
    message(country=70),
    message(event_type="CLİCK"),
    message(browser="Σafari"),
    message(event_time="2026-02-30T00:00:00Z"),
    message(event_time=HOUR_AGO),
    message(event_time=HOUR_AGO.replace("T", " ") + "Z"),
    message(event_time="2026-11-26"),
    message(event_time=HOUR_AGO + "+19:00"),
    message(event_time=123),
    message(event_time=f"{MS_AGO}\n"),
    raw(' {"customer_id": 1} '),
    raw("null"),
    raw('"text"'),
    raw("{" + '"x":"' + "y" * 1000 + '"}'),
    padded(1001),
    padded(MAX),
    b"\xef\xbb\xbf" + message(),
]


def spark_rows(spark, values, rules):
    return {
        r["kafka_offset"]: r.asDict() for r in validate(kafka_rows(spark, values), rules).collect()
    }


def assert_same(row: dict, want: dict, value: bytes | None, jsonb=("properties",)) -> None:
    """The worker's row is Spark's: times in UTC, `jsonb` columns the same JSON (jsonb stores
    either text alike; Spark writes it compact, the worker as sent)."""
    want = {k: v.replace(tzinfo=UTC) if isinstance(v, datetime) else v for k, v in want.items()}
    for one in (row, want):
        for name in jsonb:
            if one.get(name) is not None:
                one[name] = json.loads(one[name])
    assert row == want, value


def worker_rows(values, rules, spark):
    batch = kafka_rows(spark, values).toArrow().combine_chunks().to_batches()[0]
    now_us = int(datetime.now(UTC).timestamp() * 1e6)
    checked = check_batch(batch, rules, now_us)
    rows = {r["kafka_offset"]: r for r in checked.validated.to_pylist()}
    return rows, set(checked.undecided.column("offset").to_pylist())


@pytest.mark.parametrize(
    "rules", [Rules(), Rules(lab_with(max_length=10))], ids=["default", "short"]
)
def test_worker_and_spark_agree_on_every_decided_record(spark, rules):
    values = PLAIN + SPARK_DECIDES + [value for value, _ in RULE_CASES]
    expected = spark_rows(spark, values, rules)
    got, undecided = worker_rows(values, rules, spark)
    assert set(got) | undecided == set(expected) and not set(got) & undecided
    for offset, row in got.items():
        assert_same(row, expected[offset], values[offset])
    decided = {values[offset] for offset in got}
    assert [v for v in PLAIN if v not in decided] == [], "plain records are decided"
    assert [v for v in SPARK_DECIDES if v in decided] == [], "the others are left to Spark"


def test_a_message_over_the_maximum_is_too_large_and_keeps_its_first_64_kib(spark):
    values = [padded(MAX), padded(MAX + 1), b"[" * (MAX + 1)]
    rules = Rules()
    expected = spark_rows(spark, values, rules)
    got, undecided = worker_rows(values, rules, spark)
    assert undecided == {0}
    assert [expected[o]["reject_reason"] for o in range(3)] == [None, "too_large", "too_large"]
    for offset in (1, 2):
        assert got[offset]["reject_reason"] == "too_large"
        assert got[offset]["raw_value"] == expected[offset]["raw_value"] == values[offset][:65536]


SENT = {
    "account": " Acme ",
    "page": "/home",
    "channel": "Email",
    "duration_ms": 1500,
    "revenue": 12.5,
    "logged_in": True,
    "event_id": 7,
    "sent_at": HOUR_AGO + "Z",
    "amount": 19.99,
    "seen_at": HOUR_AGO + ".5Z",
    "context": {"a": [1, 2], "b": {"c": None}},
}


def sent(**changes) -> bytes:
    body = {**SENT, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


# One record per rule of the every-type model (its reason, or None when valid).
EVERY_TYPE_CASES = [
    (sent(), None),
    (sent(revenue=12, duration_ms="1500", channel=..., event_id=..., sent_at=...), None),
    (sent(extra=1), "unknown_field"),
    (sent(account=...), "missing_account"),
    (sent(account="  "), "empty_account"),
    (sent(account="x" * 21), "too_long_account"),
    (sent(account="a\u0001"), "control_chars_account"),
    (sent(account={"a": 1}), "not_text_account"),
    (sent(page=...), "missing_page"),
    (sent(page="/Home"), "not_matching_page"),
    (sent(channel="tv"), "not_allowed_channel"),
    (sent(channel=" SOCIAL "), None),
    (sent(duration_ms="abc"), "not_integer_duration_ms"),
    (sent(duration_ms=-1), "out_of_range_duration_ms"),
    (sent(duration_ms=3_000_000_000), "out_of_range_duration_ms"),
    (sent(revenue="abc"), "not_number_revenue"),
    (sent(revenue=-0.5), "out_of_range_revenue"),
    (sent(logged_in=...), "missing_logged_in"),
    (sent(logged_in="yes"), "not_boolean_logged_in"),
    (sent(logged_in=1), "not_boolean_logged_in"),
    (sent(event_id=0), "out_of_range_event_id"),
    (sent(sent_at="yesterday"), "bad_sent_at"),
    (sent(sent_at=MS_AGO), "bad_sent_at"),  # epoch milliseconds: not one of this model's formats
    (sent(sent_at=(NOW - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")), "sent_at_too_old"),
    (sent(sent_at=(NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")), "sent_at_in_future"),
    (sent(amount="abc"), "not_number_amount"),
    (sent(amount=-1), "out_of_range_amount"),
    (sent(amount=123456789012), "out_of_range_amount"),  # 12 digits before the point: 8 fit
    (sent(amount=1.005, seen_at=MS_AGO, context=[1, {"b": None}]), None),  # 1.01, rounded up
    (sent(amount="7.5", seen_at=str(MS_AGO), context=...), None),
    (sent(amount=10**400), "out_of_range_amount"),
    (sent(seen_at="yesterday"), "not_timestamp_seen_at"),
    (sent(context="text"), "not_json_context"),
    (sent(context=5), "not_json_context"),
    (sent(context='{"a": 1'), "not_json_context"),
]


def test_a_model_of_every_field_type_gets_one_verdict_whichever_path_decides(spark):
    rules = Rules(EVERY_TYPE)
    values = [value for value, _ in EVERY_TYPE_CASES]
    expected = spark_rows(spark, values, rules)
    assert [expected[o]["reject_reason"] for o in range(len(values))] == [
        reason for _, reason in EVERY_TYPE_CASES
    ]
    assert {r.reason for r in rules.ordered()} - {r for _, r in EVERY_TYPE_CASES} == {
        "empty_message",
        "too_large",
        "invalid_utf8",
        "malformed_json",
        "empty_page",
        "too_long_page",
        "control_chars_page",
        "not_text_page",
        "control_chars_channel",
        "not_text_channel",
        "not_integer_event_id",
    }  # the lab's cases cover these kinds
    got, undecided = worker_rows(values, rules, spark)
    assert set(got) | undecided == set(expected) and len(got) >= len(values) // 2
    for offset, row in got.items():
        assert_same(row, expected[offset], values[offset], ("context",))
    assert expected[0]["account"] == "acme" and expected[11]["channel"] == "social"
    assert (expected[0]["revenue"], expected[0]["logged_in"], expected[0]["duration_ms"]) == (
        12.5,
        True,
        1500,
    )
    rounded = next(o for o, (v, _) in enumerate(EVERY_TYPE_CASES) if b"1.005" in v)
    assert expected[0]["amount"] == Decimal("19.99") and expected[rounded]["amount"] == Decimal(
        "1.01"
    )
    assert json.loads(expected[rounded]["context"]) == [1, {"b": None}]
    assert expected[rounded]["seen_at"] == datetime.fromtimestamp(MS_AGO / 1000, UTC).replace(
        tzinfo=None
    )


LAB_TEXT = '"customer_id":70,"event_type":"scroll","country":"US","browser":"opera","device_id":1'
# Messages with fields the lab model does not name: kept in `properties`, with their values.
KEPT = [
    message(extra={"x": 1, "y": [1, 2.5, None, "z"]}),
    message(page="/a?b=c&d=%20", ratio=0.5, flag=True, nothing=None, n=-3),
    message(note='日本 😀 "quoted" \\ back'),
    raw("{" + LAB_TEXT + ',"session_id":2,"big":123456789012345678901234567890}'),
    raw("{" + LAB_TEXT + ',"session_id":2,"dup":1,"dup":{"last":true}}'),
    raw("{" + LAB_TEXT + ',"session_id":2, "spaced" :  [ 1 , {"a" : "b"} ] }'),
]


def test_fields_the_model_does_not_name_are_kept_whichever_path_decides(spark):
    rules = Rules()
    expected = spark_rows(spark, KEPT, rules)
    got, undecided = worker_rows(KEPT, rules, spark)
    assert not undecided, [KEPT[o] for o in undecided]
    for offset, row in got.items():
        assert row["reject_reason"] is None and row["properties"] is not None, KEPT[offset]
        assert_same(row, expected[offset], KEPT[offset])
    kept = [json.loads(expected[o]["properties"]) for o in range(len(KEPT))]
    assert kept[0] == {"extra": {"x": 1, "y": [1, 2.5, None, "z"]}}
    assert kept[1] == {"page": "/a?b=c&d=%20", "ratio": 0.5, "flag": True, "nothing": None, "n": -3}
    assert kept[2] == {"note": '日本 😀 "quoted" \\ back'}
    assert kept[3] == {"big": 123456789012345678901234567890}
    assert kept[4] == {"dup": {"last": True}}  # a field named twice: the last value, as Spark's
    assert kept[5] == {"spaced": [1, {"a": "b"}]}


@pytest.mark.parametrize(
    ("model", "valid"),
    [(LAB_MODEL, LAB), (WEB, WEB_EVENT), (EVERY_TYPE, {**SENT, "sent_at": HOUR_AGO + "Z"})],
    ids=["lab", "web_analytics", "every_type"],
)
def test_each_rule_of_a_model_names_its_dead_letter_on_both_paths(spark, model, valid):
    rules = Rules(model, max_message_bytes=4096)
    cases = breaking_messages(model, valid, rules.max_message_bytes)
    values = [json.dumps(valid).encode(), *cases.values()]
    expected = spark_rows(spark, values, rules)
    assert [expected[o]["reject_reason"] for o in range(len(values))] == [None, *cases]
    got, _ = worker_rows(values, rules, spark)
    for offset, row in got.items():
        assert row["reject_reason"] == expected[offset]["reject_reason"], values[offset]
