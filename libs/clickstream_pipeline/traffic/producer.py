"""Send clickstream events to Kafka / Event Hubs: rate control, progress, delivery accounting.

`send_events` takes librdkafka settings (`clickstream_pipeline.ingest.source.producer_config`), an
event iterator (`clickstream_pipeline.traffic.generator`: the lab's tuples, or an event model's
dicts when `SendOptions.model` is set) and `SendOptions`; `send_messages` sends
already encoded (key, value) pairs the same way. Messages are keyed by customer_id (per-tenant
ordering), batched and compressed. Every message ends acknowledged or failed: librdkafka reports
each failed delivery (and only those, which keeps Python out of the per-message path), a message
neither failed nor queued is acknowledged, and whatever is still queued when the final flush
gives up is counted as failed. Nothing is dropped silently.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from clickstream_pipeline.core.cli import progress_bar
from clickstream_pipeline.core.model import EventModel
from clickstream_pipeline.traffic import openmetrics
from clickstream_pipeline.traffic.generator import Event, EventClock, encode_event, model_messages

log = logging.getLogger(__name__)

ClientConf = dict[str, str | int | float | bool]
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


def target_defaults(eventhubs: bool) -> dict[str, Any]:
    """Compression and idempotence per target: Event Hubs (Standard tier) takes neither."""
    if eventhubs:
        return {"compression": "none", "idempotence": False}
    return {"compression": "lz4", "idempotence": True}


class ProducerError(Exception):
    """Kafka cannot be used: unreachable brokers, a missing topic, a fatal producer error."""


@dataclass(frozen=True)
class SendOptions:
    topic: str
    rate: float = 0.0  # messages/s; 0 = as fast as the broker takes them
    duration_s: float | None = None
    count: int | None = None
    late_share: float = 0.0
    late_min_s: float = 60.0
    late_max_s: float = 3 * 3600.0
    lab_fields_only: bool = False  # the lab's six fields, no event_time / event_id
    compression: str = "lz4"
    linger_ms: int = 20
    batch_size: int = 1_000_000
    idempotence: bool = True
    delivery_timeout_ms: int = 120_000
    metadata_timeout_s: float = 20.0  # reaching the brokers and finding the topic
    max_failures: int | None = 1000  # stop sending once more have failed; None: never stop
    progress: bool | None = None  # None: a bar on a terminal only
    seed: int | None = None
    metrics_port: int | None = None  # OpenMetrics of the run (`traffic.openmetrics`)
    model: EventModel | None = None  # the events are this model's dicts (`model_events`)
    extra_conf: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ValueError("rate must be >= 0")
        if self.count is not None and self.count < 0:
            raise ValueError("count must be >= 0")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration must be > 0")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}")


@dataclass
class DeliveryStats:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    late: int = 0
    unacknowledged: int = 0  # still queued when the final flush gave up (included in failed)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    stopped_because: str = "done"
    input_error: str | None = None  # the events' source failed (e.g. a bad CSV row)

    def settle(self, queued: int) -> None:
        """Acknowledged: sent, not failed, no longer queued (failures alone are reported)."""
        self.acked = self.sent - self.failed - queued

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.acked == self.sent and self.input_error is None

    def summary(self, topic: str) -> str:
        text = (
            f"topic {topic}: sent {self.sent}, acknowledged {self.acked}, failed {self.failed}"
            f" ({self.late} late) in {self.seconds:.1f}s, {self.rate:,.0f} msg/s acknowledged"
            f"; stopped: {self.stopped_because}"
        )
        if self.errors:
            text += "; errors: " + ", ".join(f"{e} x{n}" for e, n in self.errors.most_common(5))
        return text


class TokenBucket:
    """`rate` tokens per second, bursts up to `burst`; `take()` sleeps until a token is there."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 20)
        self.tokens = self.burst
        self.clock = clock
        self.sleep = sleep
        self.last = clock()

    def take(self) -> None:
        if self.tokens < 1.0:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1.0:
                self.sleep((1.0 - self.tokens) / self.rate)
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
                self.last = now
        self.tokens -= 1.0


def create_topic(
    conf: ClientConf, topic: str, partitions: int, config: dict[str, str] | None = None
) -> None:
    """Create `topic` (replication 1, as the local broker has one node); waits until the
    brokers' metadata has it with a leader for every partition (the controller answers first:
    a client asking at once can still be told the topic is unknown)."""
    admin = AdminClient(conf)  # kept alive until the future resolves
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})
    admin.create_topics([new])[topic].result(timeout=30)
    deadline = time.monotonic() + 30
    while True:
        info = admin.list_topics(topic, timeout=10).topics.get(topic)
        served = info.partitions.values() if info is not None and info.error is None else []
        if len(served) == partitions and all(p.leader >= 0 for p in served):
            return
        if time.monotonic() > deadline:
            raise ProducerError(f"topic {topic!r} was created but its brokers do not serve it")
        time.sleep(0.1)


def delete_topic(conf: ClientConf, topic: str) -> None:
    admin = AdminClient(conf)
    admin.delete_topics([topic])[topic].result(timeout=30)


def kafka_settings(conf: ClientConf, options: SendOptions) -> ClientConf:
    """The producer's settings on top of the connection's (batching, compression, delivery)."""
    settings: ClientConf = {
        **conf,
        "linger.ms": options.linger_ms,
        "batch.size": options.batch_size,
        "compression.type": options.compression,
        "acks": "all",
        "enable.idempotence": options.idempotence,
        "message.timeout.ms": options.delivery_timeout_ms,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        # a report per failed message only: the others are acknowledged once off the queue
        "delivery.report.only.error": True,
    }
    settings.update(options.extra_conf)
    return settings


def check_topic(producer: Producer, topic: str, timeout_s: float = 20.0) -> int:
    """The topic's partition count; ProducerError if the brokers or the topic are not there."""
    try:
        metadata = producer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise ProducerError(f"cannot reach the Kafka brokers: {exc.args[0]}") from None
    info = metadata.topics.get(topic)
    if info is None or (info.error is not None and not info.partitions):
        reason = info.error.str() if info is not None and info.error is not None else "missing"
        raise ProducerError(f"topic {topic!r} is not available: {reason}")
    return len(info.partitions)


class _Progress:
    """tqdm bar: sent (the bar), acknowledged, failed, queued and the acknowledged rate."""

    def __init__(self, total: int | None, enabled: bool | None) -> None:
        self.bar = progress_bar(total, "msg", "produce", enabled)
        self.last_t = time.monotonic()
        self.last_acked = 0
        self.ack_rate = 0.0

    def update(self, stats: DeliveryStats, queued: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_t < 0.5:
            return
        if now - self.last_t >= 0.25:  # a forced update right after another keeps the rate
            self.ack_rate = (stats.acked - self.last_acked) / (now - self.last_t)
            self.last_t, self.last_acked = now, stats.acked
        self.bar.update(stats.sent - self.bar.n)
        self.bar.set_postfix(
            acked=f"{stats.acked:,}",
            failed=f"{stats.failed:,}",
            queued=f"{queued:,}",
            rate=f"{self.ack_rate:,.0f}/s",
            refresh=False,
        )
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def send_events(
    conf: ClientConf,
    events: Iterator[Event] | Iterator[dict[str, Any]],
    options: SendOptions,
    producer_factory: Callable[[ClientConf], Producer] = Producer,
) -> DeliveryStats:
    """Send events until the count, the duration or the events run out; count every delivery.

    Each event is encoded as it is sent: the lab's JSON (or the model's fields, with
    `options.model`), with an event time (now, or late for `late_share` of them) and an event
    id unless `lab_fields_only`.
    """
    clock = EventClock(options.late_share, options.late_min_s, options.late_max_s, options.seed)
    lab_events = cast(Iterator[Event], events)

    def messages() -> Iterator[tuple[bytes, bytes]]:
        if options.lab_fields_only:
            for event in lab_events:
                yield str(event[0]).encode(), encode_event(event)
        else:
            for event_id, event in enumerate(lab_events, 1):
                yield str(event[0]).encode(), encode_event(event, clock.event_time_ms(), event_id)

    if options.model is not None:
        stamp = None if options.lab_fields_only else clock
        model_events = cast(Iterator[dict[str, Any]], events)
        encoded = model_messages(model_events, options.model, stamp)
    else:
        encoded = messages()
    stats = send_messages(conf, encoded, options, producer_factory)
    stats.late = clock.late
    return stats


def send_messages(
    conf: ClientConf,
    messages: Iterator[tuple[bytes | None, bytes]],
    options: SendOptions,
    producer_factory: Callable[[ClientConf], Producer] = Producer,
) -> DeliveryStats:
    """Send (key, value) pairs until the count, the duration or the messages run out."""
    stats = DeliveryStats()
    errors = stats.errors

    def on_failure(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:  # librdkafka reports failed deliveries only
            stats.failed += 1
            errors[err.str()] += 1

    producer = producer_factory(kafka_settings(conf, options))
    partitions = check_topic(producer, options.topic, options.metadata_timeout_s)
    log.info(
        "producing to %s (%d partitions), compression %s, rate %s",
        options.topic,
        partitions,
        options.compression,
        f"{options.rate:g} msg/s" if options.rate else "unlimited",
    )
    bucket = TokenBucket(options.rate) if options.rate else None
    progress = _Progress(options.count, options.progress)
    sent = 0
    if openmetrics.serve(options.metrics_port):
        openmetrics.watch_producer(
            options.topic,
            sent=lambda: sent,
            acknowledged=lambda: stats.acked,
            failed=lambda: stats.failed,
            queued=lambda: len(producer),
        )
    produce = producer.produce
    poll = producer.poll
    topic = options.topic
    count = options.count
    started = time.monotonic()
    deadline = started + options.duration_s if options.duration_s else None
    source = itertools.islice(messages, count) if count is not None else messages
    try:
        for key, value in source:
            if bucket is not None:
                bucket.take()
            while True:
                try:
                    produce(topic, value, key, on_delivery=on_failure)
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    poll(0.05)
            sent += 1
            if sent & 1023 == 0 or bucket is not None:
                poll(0)
                stats.sent = sent
                stats.settle(len(producer))
                progress.update(stats, len(producer))
                if deadline is not None and time.monotonic() >= deadline:
                    stats.stopped_because = "duration reached"
                    break
                if options.max_failures is not None and stats.failed > options.max_failures:
                    stats.stopped_because = f"more than {options.max_failures} failures"
                    break
        else:
            reached = count is not None and sent >= count
            stats.stopped_because = "count reached" if reached else "events exhausted"
    except KeyboardInterrupt:
        stats.stopped_because = "interrupted"
    except ValueError as exc:  # the source's bad input; what was sent is still accounted for
        stats.input_error = str(exc)
        stats.stopped_because = f"bad input: {exc}"
    finally:
        stats.sent = sent
        _drain(producer, stats, progress, options.delivery_timeout_ms / 1000 + 10)
        progress.update(stats, len(producer), force=True)
        progress.close()
        stats.seconds = time.monotonic() - started
    return stats


def _drain(producer: Producer, stats: DeliveryStats, progress: _Progress, timeout: float) -> None:
    """Flush until every message is acknowledged or failed; count leftovers as failed."""
    give_up = time.monotonic() + timeout
    try:
        while len(producer) > 0 and time.monotonic() < give_up:
            producer.flush(0.5)
            stats.settle(len(producer))
            progress.update(stats, len(producer))
    except KeyboardInterrupt:
        log.warning("flush interrupted: counting %d queued messages as failed", len(producer))
    left = len(producer)
    stats.settle(left)
    if left > 0:
        stats.unacknowledged = left
        stats.failed += left
        stats.errors["not acknowledged before exit"] += left
