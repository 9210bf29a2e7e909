"""Messages of every size and some awkward bytes: each ends in `events` or the dead letters
with its exact reason, a message over `ingest.max_message_bytes` as "too_large"."""

from __future__ import annotations

import json
import uuid

from confluent_kafka import Producer

from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.ingest.transforms import TOO_LARGE_KEPT_BYTES
from clickstream_pipeline.traffic.producer import create_topic
from tests.integration.ingest_support import batch_totals, stored_events
from tests.integration.test_ingest import ingest_config, run_available_now

LAB = {
    "customer_id": 7,
    "event_type": "click",
    "country": "India",
    "browser": "chrome",
    "device_id": 1,
    "session_id": 1,
}
TOPIC_LIMIT = 8 << 20  # the topic and the producer take messages over the ingest's maximum


def padded(size: int, event_id: int) -> bytes:
    """A valid lab message of exactly `size` bytes (an extra field pads it)."""
    body = {**LAB, "event_id": event_id, "pad": ""}
    body["pad"] = "x" * (size - len(json.dumps(body).encode()))
    value = json.dumps(body).encode()
    assert len(value) == size
    return value


def lab_bytes(**raw: bytes) -> bytes:
    """A lab message with some fields' JSON text given as raw bytes."""
    fields = [
        json.dumps(k).encode() + b": " + raw.get(k, json.dumps(v).encode()) for k, v in LAB.items()
    ]
    return b"{" + b", ".join(fields) + b"}"


def test_messages_of_every_size_end_in_events_or_the_dead_letters(spark, tier, db):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = f"test-sizes-{uuid.uuid4().hex[:10]}"
    create_topic(conf, topic, 2, {"max.message.bytes": str(TOPIC_LIMIT)})
    limit = tier.config.ingest.max_message_bytes
    assert limit == 1 << 20  # Event Hubs' maximum by default
    deep = b'{"customer_id": 1, "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    cases: list[tuple[bytes, str | None]] = [
        (b"", "malformed_json"),
        (padded(1000, 1), None),  # the largest the Python worker decides
        (padded(1001, 2), None),  # the smallest Spark's rules decide
        (padded(256_000, 3), None),
        (padded(1_000_000, 4), None),
        (padded(limit, 5), None),
        (padded(limit + 1, 6), "too_large"),
        (padded(3 * limit, 7), "too_large"),
        (deep, "malformed_json"),  # nesting beyond Jackson's 1000 levels
        (lab_bytes(event_type=b'"cl\x00ick"'), "malformed_json"),  # a raw NUL in a string
        (lab_bytes(country=b'"Ind\xffia"'), "invalid_utf8"),
    ]
    where: dict[int, tuple[int, int]] = {}
    producer = Producer({**conf, "message.max.bytes": TOPIC_LIMIT})
    for i, (value, _) in enumerate(cases):

        def delivered(err, msg, i=i):
            assert err is None, err
            where[i] = (msg.partition(), msg.offset())

        producer.produce(topic, value, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(60) == 0 and len(where) == len(cases)
    cfg = ingest_config(tier.config, topic)

    run_available_now(spark, cfg, tier.secrets)

    written = {r[0] for r in stored_events(db, topic)}
    valid = {json.loads(v)["event_id"] for v, reason in cases if reason is None}
    assert written == valid
    letters = spark.read.format("delta").load(cfg.dead_letter_path)
    dead = {
        (r.partition, r.offset): (r.reason, bytes(r.raw_value))
        for r in letters.filter(letters.query_name == cfg.ingest.query_name).collect()
        if r.topic == topic
    }
    expected = {
        where[i]: (reason, value[:TOO_LARGE_KEPT_BYTES] if reason == "too_large" else value)
        for i, (value, reason) in enumerate(cases)
        if reason is not None
    }
    assert {k: v[0] for k, v in dead.items()} == {k: v[0] for k, v in expected.items()}
    assert dead == expected
    _, read, n_written, duplicates, n_dead = batch_totals(db, cfg.ingest.query_name)
    assert read == len(cases) == n_written + duplicates + n_dead
    assert (n_written, n_dead) == (len(valid), len(expected))
