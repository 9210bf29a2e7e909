"""The producer against the local Kafka: what is sent is what is on the topic, nothing dropped."""

from __future__ import annotations

import csv
import itertools
import json
import re
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest

from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.jobs import produce as produce_job
from clickstream_pipeline.traffic.generator import LAB_FIELDS, storefront_events, write_csv_files
from clickstream_pipeline.traffic.producer import (
    ProducerError,
    SendOptions,
    create_topic,
    delete_topic,
    send_events,
    send_messages,
)
from devkit.metrics import of, scrape
from devkit.ports import free_port
from tests.integration.ingest_support import consume_all

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PLAIN = "127.0.0.1:59092"
SASL = "localhost:59093"


@pytest.fixture(scope="module")
def conf(local_config, local_secrets):
    return producer_config(local_config.kafka, local_secrets)


@pytest.fixture
def topic(conf):
    """A fresh 3-partition topic per test, deleted afterwards."""
    name = f"test-produce-{uuid.uuid4().hex[:10]}"
    create_topic(conf, name, 3)
    yield name
    delete_topic(conf, name)


def options(topic: str, **kw) -> SendOptions:
    return SendOptions(topic=topic, progress=False, **kw)


def test_n_messages_produced_are_n_valid_messages_on_the_topic(conf, topic):
    n = 5000
    before = datetime.now(UTC)
    stats = send_events(conf, storefront_events(seed=4), options(topic, count=n))
    assert (stats.sent, stats.acked, stats.failed) == (n, n, 0)
    assert stats.ok and stats.stopped_because == "count reached"

    messages = consume_all(conf, topic, n)
    assert len(messages) == n
    ids = []
    for msg in messages:
        body = json.loads(msg.value())
        assert list(body) == [*LAB_FIELDS, "event_time", "event_id"]
        for name in ("customer_id", "device_id", "session_id", "event_id"):
            assert isinstance(body[name], int)
        for name in ("event_type", "country", "browser"):
            assert isinstance(body[name], str) and body[name]
        assert ISO_MS.match(body["event_time"])
        stamped = datetime.fromisoformat(body["event_time"].replace("Z", "+00:00"))
        assert (stamped - before).total_seconds() > -1  # no late share: stamped now
        assert msg.key() == str(body["customer_id"]).encode()  # keyed by tenant
        ids.append(body["event_id"])
    assert sorted(ids) == list(range(1, n + 1))  # unique per run
    # one tenant, one partition: per-tenant ordering
    partitions_of = {}
    for msg in messages:
        partitions_of.setdefault(msg.key(), set()).add(msg.partition())
    assert all(len(p) == 1 for p in partitions_of.values())
    assert len({msg.partition() for msg in messages}) == 3


def test_csv_replay_sends_every_data_row(conf, topic, tmp_path):
    written = write_csv_files(tmp_path, storefront_events(seed=8), files=3, rows=777)
    rows = []
    for path, _ in written:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            rows.extend((int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5])) for r in reader)
    assert len(rows) == 3 * 777

    code = produce_job.main(
        ["--env", "local", "--csv", str(tmp_path), "--topic", topic, "--no-progress"]
    )
    assert code == 0

    messages = consume_all(conf, topic, len(rows))
    sent = [tuple(json.loads(m.value())[f] for f in LAB_FIELDS) for m in messages]
    assert Counter(sent) == Counter(rows)  # the first row of each file included


def test_encoded_messages_arrive_byte_for_byte_and_are_all_acknowledged(conf, topic):
    pairs = [(None if i % 3 == 0 else b"k%d" % i, b'{"n":%d}' % i) for i in range(3000)]
    stats = send_messages(conf, iter(pairs), options(topic))
    # successes are counted without a report each (librdkafka reports failures only)
    assert (stats.sent, stats.acked, stats.failed, stats.stopped_because) == (
        3000,
        3000,
        0,
        "events exhausted",
    )
    assert stats.ok
    got = Counter((m.key(), m.value()) for m in consume_all(conf, topic, len(pairs)))
    assert got == Counter(pairs)


def test_rate_and_duration_are_honoured(conf, topic):
    stats = send_events(conf, storefront_events(seed=1), options(topic, rate=400, duration_s=2.0))
    assert stats.stopped_because == "duration reached"
    assert 0.8 * 800 <= stats.sent <= 800 + 25  # 2 s at 400/s plus the small initial burst
    assert stats.ok


def test_late_events_at_the_configured_share_arrive_out_of_order(conf, topic):
    n = 3000
    started = time.time()
    stats = send_events(
        conf, storefront_events(seed=2), options(topic, count=n, late_share=0.3, seed=2)
    )
    assert stats.ok
    bodies = [json.loads(m.value()) for m in consume_all(conf, topic, n)]
    assert len(bodies) == n
    times = {
        b["event_id"]: datetime.fromisoformat(b["event_time"].replace("Z", "+00:00")).timestamp()
        for b in bodies
    }
    late = [i for i, t in times.items() if t < started - 59]
    assert len(late) / n == pytest.approx(0.3, abs=0.04)
    assert stats.late == len(late)
    assert min(times.values()) > started - 3 * 3600 - 5
    in_id_order = [times[i] for i in sorted(times)]
    inversions = sum(1 for a, b in itertools.pairwise(in_id_order) if b < a)
    assert inversions > n * 0.1


def test_lab_fields_only_sends_exactly_the_labs_message(conf, topic):
    send_events(conf, storefront_events(seed=3), options(topic, count=50, lab_fields_only=True))
    bodies = [json.loads(m.value()) for m in consume_all(conf, topic, 50)]
    assert len(bodies) == 50 and all(list(b) == list(LAB_FIELDS) for b in bodies)


def test_delivery_failures_are_counted_and_the_job_exits_non_zero(conf, local_config):
    # a topic that takes no batch as big as ours: the broker rejects every message
    name = f"test-produce-small-{uuid.uuid4().hex[:10]}"
    create_topic(conf, name, 1, config={"max.message.bytes": "100"})
    try:
        stats = send_events(conf, storefront_events(seed=1), options(name, count=200))
        assert (stats.sent, stats.acked, stats.failed) == (200, 0, 200)
        assert not stats.ok
        assert sum(stats.errors.values()) == 200
        # each failure came back as the broker's delivery report, not as a leftover
        assert stats.unacknowledged == 0
        assert all("too large" in reason.lower() for reason in stats.errors), stats.errors
        assert "failed 200" in stats.summary(name)

        code = produce_job.main(
            ["--env", "local", "--topic", name, "--count", "100", "--no-progress"]
        )
        assert code == 1
    finally:
        delete_topic(conf, name)


def test_unreachable_brokers_fail_fast_with_a_clear_error():
    with pytest.raises(ProducerError, match="cannot reach"):
        send_events(
            {"bootstrap.servers": "127.0.0.1:9"},
            storefront_events(seed=1),
            SendOptions(topic="x", count=1, progress=False, metadata_timeout_s=3),
        )


def test_through_the_event_hubs_style_listener(local_config, local_secrets, topic, conf):
    code = produce_job.main(
        [
            "--env",
            "local",
            "--set",
            "kafka.security=eventhubs",
            "--set",
            f"kafka.bootstrap_servers={SASL}",
            "--topic",
            topic,
            "--count",
            "300",
            "--lab-uniform",
            "--no-progress",
        ]
    )
    assert code == 0
    assert len(consume_all(conf, topic, 300)) == 300


def test_with_a_metrics_port_the_producer_serves_its_counts_while_it_sends(conf, topic):
    port, seen, done = free_port(), [], threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(of(scrape(port), "clickstream_produce_messages_total", outcome="sent"))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        sending = options(topic, count=6000, rate=4000, metrics_port=port)
        stats = send_events(conf, storefront_events(seed=9), sending)
    finally:
        done.set()
        watcher.join()
    final = scrape(port)
    sent = "clickstream_produce_messages_total"
    assert of(final, sent, topic=topic, outcome="sent") == stats.sent == 6000
    assert of(final, sent, topic=topic, outcome="acknowledged") == stats.acked == 6000
    assert of(final, sent, topic=topic, outcome="failed") == 0
    assert of(final, "clickstream_produce_queued_messages", topic=topic) == 0
    assert any(0 < n < 6000 for n in seen), "no scrape saw the run under way"
