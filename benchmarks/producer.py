"""Producer throughput: `clickstream-produce`'s engine next to a raw confluent-kafka loop over
the same pre-serialised messages, with the same librdkafka settings (target: the same messages
>= 0.8x the raw loop), then generating storefront and lab-uniform traffic as it sends."""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

from confluent_kafka import Producer

from benchmarks.harness import Scenario, Target, say
from clickstream_pipeline.traffic import producer as send
from clickstream_pipeline.traffic.generator import encode_event, lab_uniform_events
from clickstream_pipeline.traffic.generator import storefront_events as storefront
from devkit.stack import fresh_topic


def raw_baseline(conf: dict, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """A tight loop: no generation, no bookkeeping; acknowledged messages/s, flush included."""
    producer = Producer(send.kafka_settings(conf, send.SendOptions(topic=topic)))
    producer.list_topics(topic, timeout=20)
    started = time.perf_counter()
    for i, (key, value) in enumerate(messages):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        if i & 1023 == 0:
            producer.poll(0)
    if left := producer.flush(120):
        raise RuntimeError(f"raw baseline: {left} messages not acknowledged")
    return len(messages) / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict[str, Any]:
    conf, n = args.kafka, args.messages
    figures: dict[str, Any] = {"messages": n}
    with fresh_topic(conf, "bench-produce") as topic:
        now_ms = int(time.time() * 1000)
        events = enumerate(itertools.islice(storefront(seed=1), n))
        pre = [(str(e[0]).encode(), encode_event(e, now_ms, i)) for i, e in events]
        figures["raw_msg_per_s"] = raw_baseline(conf, topic, pre)
        sends = {
            "same_messages_msg_per_s": lambda o: send.send_messages(conf, iter(pre), o),
            "storefront_msg_per_s": lambda o: send.send_events(conf, storefront(seed=1), o),
            "lab_uniform_msg_per_s": lambda o: send.send_events(conf, lab_uniform_events(1), o),
        }
        for key, sending in sends.items():
            stats = sending(send.SendOptions(topic=topic, count=n, progress=False))
            if not stats.ok or stats.acked != n:
                raise RuntimeError(stats.summary(topic))
            figures[key] = stats.acked / stats.seconds
            say(f"{key}: {figures[key]:,.0f} (raw {figures['raw_msg_per_s']:,.0f})")
    return figures


SCENARIO = Scenario(
    "producer",
    __doc__ or "",
    run,
    flags={"messages": 400_000},
    quick={"messages": 50_000},
    targets=lambda f: [
        Target(
            "same_messages_ge_0_8x_raw",
            f["same_messages_msg_per_s"] / f["raw_msg_per_s"],
            ">=",
            0.8,
            "the same messages >= 0.8x raw",
        )
    ],
    rows=(
        "producer, {messages:,} messages | storefront {storefront_msg_per_s:,.0f} msg/s,"
        " lab-uniform {lab_uniform_msg_per_s:,.0f} msg/s; the same messages"
        " {same_messages_msg_per_s:,.0f} msg/s | raw confluent-kafka {raw_msg_per_s:,.0f} msg/s"
        " | {storefront_over_raw:.2f}x | {targets:same_messages_ge_0_8x_raw}",
    ),
    derived=lambda f: {"storefront_over_raw": f["storefront_msg_per_s"] / f["raw_msg_per_s"]},
)

if __name__ == "__main__":
    SCENARIO.main()
