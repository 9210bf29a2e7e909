"""Producer throughput on this machine: `clickstream-produce`'s engine next to a raw client.

Both send to a fresh topic on the local Kafka (`make up`) with the same librdkafka settings
(lz4, linger.ms 20, acks all, idempotence): first the raw confluent-kafka client in a tight loop
over pre-serialised messages (no generation, no per-message bookkeeping), then `send_messages`
sending the same messages with its rate control, progress and delivery accounting (target:
>= 0.8x the raw loop), then `send_events` generating storefront and lab-uniform traffic with
event times and ids as it sends. Figures are acknowledged messages/s, flush included.

Run: `.venv/bin/python -m benchmarks.producer [--messages 400000] [--quick]`.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

from confluent_kafka import Producer

from benchmarks.harness import Cells, Scenario, Target, n0, say, setup_env, verdict
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.traffic.generator import (
    encode_event,
    lab_uniform_events,
    storefront_events,
)
from clickstream_pipeline.traffic.producer import (
    SendOptions,
    kafka_settings,
    send_events,
    send_messages,
)
from devkit.stack import fresh_topic


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg, secrets = setup_env(args.env)
    conf = producer_config(cfg.kafka, secrets)
    n = args.messages
    figures: dict[str, Any] = {"messages": n}
    with fresh_topic(conf, "bench-produce") as topic:
        now_ms = int(time.time() * 1000)
        pre = [
            (str(e[0]).encode(), encode_event(e, now_ms, i))
            for i, e in enumerate(itertools.islice(storefront_events(seed=1), n))
        ]
        figures["raw_msg_per_s"] = raw_baseline(conf, topic, pre)
        sends = {
            "same_messages_msg_per_s": lambda o: send_messages(conf, iter(pre), o),
            "storefront_msg_per_s": lambda o: send_events(conf, storefront_events(seed=1), o),
            "lab_uniform_msg_per_s": lambda o: send_events(conf, lab_uniform_events(1), o),
        }
        for key, send in sends.items():
            stats = send(SendOptions(topic=topic, count=n, progress=False))
            if not stats.ok or stats.acked != n:
                raise RuntimeError(stats.summary(topic))
            figures[key] = stats.acked / stats.seconds
            say(f"{key}: {figures[key]:,.0f} (raw {figures['raw_msg_per_s']:,.0f})")
    return figures


def rows(f: dict[str, Any]) -> list[Cells]:
    raw = f["raw_msg_per_s"]
    return [
        [
            f"producer, {f['messages']:,} messages",
            f"storefront {n0(f['storefront_msg_per_s'])} msg/s, lab-uniform "
            f"{n0(f['lab_uniform_msg_per_s'])} msg/s; the same messages "
            f"{n0(f['same_messages_msg_per_s'])} msg/s",
            f"raw confluent-kafka {n0(raw)} msg/s",
            f"{f['storefront_msg_per_s'] / raw:.2f}x",
            verdict(f, "same_messages_ge_0_8x_raw"),
        ]
    ]


SCENARIO = Scenario(
    "producer",
    __doc__ or "",
    run,
    quick={"messages": 50_000},
    arguments=lambda p: p.add_argument("--messages", type=int, default=400_000),
    targets=lambda f: [
        Target(
            "same_messages_ge_0_8x_raw",
            f["same_messages_msg_per_s"] / f["raw_msg_per_s"],
            ">=",
            0.8,
            "the same messages >= 0.8x raw",
        ),
    ],
    rows=rows,
)

if __name__ == "__main__":
    SCENARIO.main()
