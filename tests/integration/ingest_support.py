"""Test data and checks for the ingest job: lab messages, some malformed, some awkward."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer

from clickstream_pipeline.core.config import Config
from clickstream_pipeline.ingest.ledger import query_totals
from clickstream_pipeline.traffic.producer import create_topic
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.db import query
from tests.conftest import PROJECT_DIR

AWKWARD = [
    'O\'Brien "quoted", with, commas',
    "back\\slash \\N and \\. and tab-less",
    "'); DROP TABLE events; --",
    "Côte d\u2019Ivoire",
    "Україна",
    "日本",
    "emoji 😀🚀",
    "line\u2028separator",
    "  leading and trailing spaces  ",
]
COUNTRIES = ["United States", "United Kingdom", "India", "France", "Germany", "China"]
MALFORMED: list[bytes] = [
    b"{broken json",
    b"",
    b"[1, 2, 3]",
    b"\xff\xfe not utf-8",
    json.dumps(
        {
            "customer_id": "abc",
            "event_type": "click",
            "country": "India",
            "browser": "chrome",
            "device_id": 1,
            "session_id": 1,
        }
    ).encode(),
    json.dumps(
        {
            "event_type": "click",
            "country": "India",
            "browser": "chrome",
            "device_id": 1,
            "session_id": 1,
        }
    ).encode(),
    json.dumps(
        {
            "customer_id": 1,
            "event_type": "click",
            "country": "x" * 5000,
            "browser": "chrome",
            "device_id": 1,
            "session_id": 1,
        }
    ).encode(),
    json.dumps(
        {
            "customer_id": 1,
            "event_type": "cl\u0000ick",
            "country": "India",
            "browser": "chrome",
            "device_id": 1,
            "session_id": 1,
        }
    ).encode(),
    json.dumps(
        {
            "customer_id": 1,
            "event_type": "",
            "country": "India",
            "browser": "chrome",
            "device_id": 1,
            "session_id": 1,
        }
    ).encode(),
    json.dumps(
        {
            "customer_id": 1.5,
            "event_type": "click",
            "country": "India",
            "browser": "chrome",
            "device_id": 1,
            "session_id": 1,
        }
    ).encode(),
]


@dataclass
class Sent:
    topic: str
    valid: dict[
        int, tuple
    ]  # source_event_id -> (customer, type, country, browser, device, session)
    invalid: list[bytes]
    # source_event_id -> the fields the lab model does not name (kept in events.properties)
    properties: dict[int, dict] = dataclasses.field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.valid) + len(self.invalid)

    def add(self, more: Sent) -> None:
        """Count the records of a later send to the same topic too."""
        self.valid.update(more.valid)
        self.invalid += more.invalid
        self.properties.update(more.properties)


def new_topic(kafka_conf: dict, partitions: int = 4) -> str:
    topic = f"test-ingest-{uuid.uuid4().hex[:10]}"
    create_topic(kafka_conf, topic, partitions)
    return topic


def produce_mix(
    kafka_conf: dict,
    topic: str,
    n: int,
    seed: int = 1,
    malformed_share: float = 0.01,
    first_id: int = 1,
) -> Sent:
    """n messages: ~1% malformed in assorted ways, some valid ones with awkward strings."""
    rng = random.Random(seed)
    producer = Producer(
        {
            **kafka_conf,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    sent = Sent(topic, {}, [])
    for i in range(n):
        if rng.random() < malformed_share:
            value = rng.choice(MALFORMED)
            sent.invalid.append(value)
        else:
            event_id = first_id + i
            country = rng.choice(AWKWARD) if rng.random() < 0.05 else rng.choice(COUNTRIES)
            fields = (
                rng.randint(1, 1000),
                rng.choice(["click", "buy", "scroll", "download"]),
                country,
                rng.choice(["chrome", "firefox", "safari", "opera"]),
                rng.randint(1, 10000),
                rng.randint(1, 100000),
            )
            message = dict(
                zip(
                    ("customer_id", "event_type", "country", "browser", "device_id", "session_id"),
                    fields,
                    strict=True,
                )
            )
            if i % 10 == 3:  # fields the model does not name, kept as sent
                extra = {"page": f"/p/{i}?q=ü", "utm": {"source": ["mail", "ads"][i % 2], "n": i}}
                message.update(extra)
                sent.properties[event_id] = extra
            value = json.dumps({**message, "event_id": event_id}, ensure_ascii=rng.random() < 0.5)
            value = value.encode()
            sent.valid[event_id] = fields
        producer.produce(topic, value, str(i % 97).encode())
        if i % 10000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return sent


def consume_all(conf, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    """Every message on the topic: read until `expected` arrived, then 1 s more for extras."""
    consumer = Consumer(
        {
            **conf,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list = []
    deadline = time.monotonic() + timeout_s
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            if len(messages) >= expected:
                quiet_until = quiet_until or time.monotonic() + 1.0
                if time.monotonic() > quiet_until:
                    break
            batch = consumer.consume(10_000, timeout=0.5)
            for msg in batch:
                assert msg.error() is None, msg.error()
                messages.append(msg)
    finally:
        consumer.close()
    return messages


def stored_events(db: ConnectionParams, topic: str) -> list[tuple]:
    return query(
        db,
        """SELECT source_event_id, customer_id, event_type, country, browser, device_id,
                  session_id FROM events WHERE kafka_topic = %s""",
        (topic,),
    )


def assert_exactly_once(db: ConnectionParams, sent: Sent) -> None:
    rows = stored_events(db, sent.topic)
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "a valid message was written twice"
    assert {r[0]: tuple(r[1:]) for r in rows} == sent.valid
    kept = query(
        db,
        "SELECT source_event_id, properties FROM events "
        "WHERE kafka_topic = %s AND properties IS NOT NULL",
        (sent.topic,),
    )
    expected = {k: v for k, v in sent.properties.items() if k in sent.valid}
    assert dict(kept) == expected, "the fields the model does not name were not kept"


def dead_letter_values(spark, cfg: Config, query_name: str) -> list[tuple[bytes, str]]:
    df = spark.read.format("delta").load(cfg.dead_letter_path)
    return [
        (bytes(r.raw_value) if r.raw_value is not None else None, r.reason)
        for r in df.filter(df.query_name == query_name).collect()
    ]


def batch_totals(db: ConnectionParams, query_name: str) -> tuple[int, ...]:
    """The query's batch records: (batches, read, written, duplicates, dead-lettered)."""
    return dataclasses.astuple(query_totals(db, query_name))


def ledger_batches(db: ConnectionParams, sink: str) -> set[int]:
    return {
        b
        for (b,) in query(
            db, "SELECT DISTINCT batch_id FROM clickstream_ingest_ledger WHERE sink = %s", (sink,)
        )
    }


JOB = [sys.executable, "-m", "clickstream_pipeline.jobs.ingest"]


def start_job(env: str, topic: str, log: Path, *extra: str) -> subprocess.Popen:
    args = [
        *JOB,
        "--env",
        env,
        "--set",
        f'kafka.topics=["{topic}"]',
        "--set",
        f"ingest.query_name=q-{topic}",
        *extra,
    ]
    return subprocess.Popen(
        args,
        cwd=PROJECT_DIR,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
