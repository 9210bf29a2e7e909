"""Producer throughput on this machine: `clickstream-produce`'s engine next to a raw client.

Both send to a fresh topic on the local Kafka (`make up`) with the same librdkafka settings
(lz4, linger.ms 20, acks all, idempotence): first the raw confluent-kafka client in a tight loop
over pre-serialised messages (no generation, no per-message bookkeeping), then `send_messages`
sending the same messages with its rate control, progress and delivery accounting (target:
>= 0.8x the raw loop), then `send_events` generating storefront and lab-uniform traffic with
event times and ids as it sends. Figures are acknowledged messages/s, flush included.

Run: `.venv/bin/python -m benchmarks.producer [--messages 400000]` (about 30-60 s).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
import uuid

from confluent_kafka import Producer

from clickstream_pipeline.core.config import load_config
from clickstream_pipeline.core.secrets import resolve_secrets
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.traffic.generator import (
    encode_event,
    lab_uniform_events,
    storefront_events,
)
from clickstream_pipeline.traffic.producer import (
    SendOptions,
    create_topic,
    delete_topic,
    kafka_settings,
    send_events,
    send_messages,
)


def raw_baseline(conf: dict, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    producer = Producer(kafka_settings(conf, SendOptions(topic=topic)))
    producer.list_topics(topic, timeout=20)
    produce, poll = producer.produce, producer.poll
    started = time.perf_counter()
    for i, (key, value) in enumerate(messages):
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                poll(0.05)
        if i & 1023 == 0:
            poll(0)
    left = producer.flush(120)
    seconds = time.perf_counter() - started
    if left:
        raise RuntimeError(f"raw baseline: {left} messages not acknowledged")
    return len(messages) / seconds


def ours(conf: dict, topic: str, n: int, lab_uniform: bool) -> float:
    events = lab_uniform_events(1) if lab_uniform else storefront_events(seed=1)
    stats = send_events(conf, events, SendOptions(topic=topic, count=n, progress=False))
    if not stats.ok:
        raise RuntimeError(stats.summary(topic))
    return stats.acked / stats.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400_000)
    args = parser.parse_args()
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cfg = load_config("local")
    secrets = resolve_secrets(cfg.secrets, optional=("kafka_server", "kafka_connection_string"))
    conf = producer_config(cfg.kafka, secrets)
    topic = f"bench-produce-{uuid.uuid4().hex[:8]}"
    create_topic(conf, topic, 4)
    n = args.messages
    try:
        now_ms = int(time.time() * 1000)
        pre = [
            (str(e[0]).encode(), encode_event(e, now_ms, i))
            for i, e in enumerate(itertools.islice(storefront_events(seed=1), n))
        ]
        print(f"{n:,} messages each, topic {topic} (4 partitions), {os.cpu_count()} cores")
        raw = raw_baseline(conf, topic, pre)
        print(f"raw confluent-kafka (baseline):   {raw:>10,.0f} msg/s")
        stats = send_messages(conf, iter(pre), SendOptions(topic=topic, progress=False))
        if not stats.ok or stats.acked != n:
            raise RuntimeError(stats.summary(topic))
        same = stats.acked / stats.seconds
        del pre
        verdict = "met" if same >= 0.8 * raw else "MISSED"
        print(
            f"clickstream-produce, same msgs:   {same:>10,.0f} msg/s  ratio {same / raw:.2f} "
            f"(target >= 0.80: {verdict})"
        )
        store = ours(conf, topic, n, lab_uniform=False)
        print(f"clickstream-produce, storefront:  {store:>10,.0f} msg/s  ratio {store / raw:.2f}")
        lab = ours(conf, topic, n, lab_uniform=True)
        print(f"clickstream-produce, lab-uniform: {lab:>10,.0f} msg/s  ratio {lab / raw:.2f}")
    finally:
        delete_topic(conf, topic)


if __name__ == "__main__":
    main()
