"""Which incarnation of each topic the job reads, and whether the offset ledger agrees.

A topic deleted and created again under the same name starts its offsets at 0 again; keyed by
name alone, the ledger would take its new messages for replays of the old ones and skip them.
Kafka gives every topic an id (KIP-516), new with each incarnation: the ledger keys its ranges
by it, so a recreated topic's offsets are written anew. Where the broker gives no id (Azure
Event Hubs' Kafka endpoint), the ranges are keyed by a generation label the user sets
(`ingest.topic_generation`), and at start the job refuses a partition whose log ends below an
offset the ledger committed: those offsets went backwards, so the topic was recreated or
truncated, and only the user can say that its messages are new.

Ranges written before the ledger knew identities (key '') are adopted at start under the
topic's id while its partitions still reach past them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from clickstream_pipeline.core.config import KafkaConfig
from clickstream_pipeline.core.errors import RecreatedTopicError, SourceConfigError
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.ingest.source import producer_config, topic_names
from clickstream_pipeline.warehouse.database import open_connection, retrying

log = logging.getLogger(__name__)

UNKNOWN = ""  # the ledger's key for ranges of no known identity
NO_TOPIC_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # Kafka's all-zero Uuid, as librdkafka prints it


@dataclass(frozen=True)
class TopicState:
    """A topic as the broker describes it now."""

    topic_id: str  # Kafka's topic id, or UNKNOWN where the broker gives none
    ends: dict[int, int] = field(default_factory=dict)  # partition -> log end offset


def ledger_key(topic_id: str, generation: str) -> str:
    """A topic's key in the ledger: its id and the configured generation, as far as known."""
    parts = [topic_id] if topic_id else []
    if generation:
        parts.append(f"generation:{generation}")
    return "/".join(parts)


def describe_topics(
    kafka: KafkaConfig, secrets: Secrets, timeout_s: float = 30.0
) -> dict[str, TopicState]:
    """Each subscribed topic's id and partition ends; retried until `timeout_s`, then an error
    (the ledger's key cannot be guessed: a wrong one would write a replay twice)."""
    admin = AdminClient({**producer_config(kafka, secrets), "log_level": 0})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _describe(admin, kafka, max(1.0, deadline - time.monotonic()))
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise SourceConfigError(
                    f"cannot describe the subscribed topics in {timeout_s:.0f} s ({exc}); the "
                    "offset ledger needs each topic's identity before the first batch"
                ) from None
            time.sleep(1.0)


def _describe(admin: AdminClient, kafka: KafkaConfig, timeout_s: float) -> dict[str, TopicState]:
    names = topic_names(kafka, admin.list_topics(timeout=timeout_s).topics)
    if not names:
        return {}
    described = admin.describe_topics(TopicCollection(names), request_timeout=timeout_s)
    partitions: dict[str, list[int]] = {}
    ids: dict[str, str] = {}
    for name, future in described.items():
        description = future.result()
        topic_id = str(description.topic_id) if description.topic_id is not None else ""
        ids[name] = UNKNOWN if topic_id in ("", NO_TOPIC_ID) else topic_id
        partitions[name] = [p.id for p in description.partitions]
    wanted = {TopicPartition(n, p): OffsetSpec.latest() for n, ps in partitions.items() for p in ps}
    ends: dict[str, dict[int, int]] = {name: {} for name in names}
    for tp, future in admin.list_offsets(wanted, request_timeout=timeout_s).items():
        ends[tp.topic][tp.partition] = future.result().offset
    return {name: TopicState(ids[name], ends[name]) for name in names}


# the ledger's ranges of a query's sinks (the query's name, and `<name>:<purpose>`)
_COMMITTED = """SELECT topic_id, kafka_partition, max(end_offset)
    FROM clickstream_ingest_ledger
    WHERE (sink = %(query)s OR starts_with(sink, %(query)s || ':')) AND kafka_topic = %(topic)s
    GROUP BY topic_id, kafka_partition"""
_ADOPT = """UPDATE clickstream_ingest_ledger SET topic_id = %(key)s
    WHERE (sink = %(query)s OR starts_with(sink, %(query)s || ':')) AND kafka_topic = %(topic)s
      AND topic_id = ''"""


def backwards(committed: dict[int, int], state: TopicState) -> list[tuple[int, int, int]]:
    """(partition, last committed offset, log end) where the log ends at or below an offset
    the ledger committed."""
    return sorted(
        (partition, last, state.ends.get(partition, 0))
        for partition, last in committed.items()
        if last >= state.ends.get(partition, 0)
    )


def ledger_keys(
    connect_kwargs: dict[str, Any],
    query_name: str,
    topics: dict[str, TopicState],
    generation: str,
    max_attempts: int = 8,
) -> dict[str, str]:
    """Each topic's key in the ledger; adopts the ranges written before keys (when the topic is
    unchanged) and refuses a topic whose offsets went backwards under the same key."""

    def check() -> dict[str, str]:
        conn = open_connection(connect_kwargs)
        try:
            with conn, conn.cursor() as cur:
                return {
                    topic: _key_of(cur, query_name, topic, state, generation)
                    for topic, state in sorted(topics.items())
                }
        finally:
            conn.close()

    keys: dict[str, str] = retrying(check, max_attempts, 0.25)
    return keys


def _key_of(cur: Any, query_name: str, topic: str, state: TopicState, generation: str) -> str:
    key = ledger_key(state.topic_id, generation)
    cur.execute(_COMMITTED, {"query": query_name, "topic": topic})
    committed: dict[str, dict[int, int]] = {}
    for topic_id, partition, last in cur.fetchall():
        committed.setdefault(topic_id, {})[int(partition)] = int(last)
    if state.topic_id and UNKNOWN in committed:
        gone = backwards(committed[UNKNOWN], state)
        if gone:
            log.warning(
                "topic %s: the ledger's ranges from before topic ids reach past the log "
                "(partition %d: offset %d committed, log ends at %d): they belong to an earlier "
                "topic of this name and are kept apart from topic id %s",
                topic,
                *gone[0],
                key,
            )
        else:
            cur.execute(_ADOPT, {"key": key, "query": query_name, "topic": topic})
            log.info(
                "topic %s: %d ledger ranges adopted under topic id %s", topic, cur.rowcount, key
            )
    gone = backwards(committed.get(key, {}), state)
    if gone:
        partition, last, end = gone[0]
        why = (
            "its log was truncated (Kafka kept the topic's id)"
            if state.topic_id
            else "the topic was recreated or truncated under the same name (the broker gives no "
            "topic id)"
        )
        raise RecreatedTopicError(
            f"topic {topic!r} partition {partition}: the offset ledger of query "
            f"{query_name!r} committed offsets up to {last}, but the partition's log ends at "
            f"offset {end}: {why}, and messages at those offsets would be taken for ones "
            "already written. To write them as new, give the topic's new incarnation a "
            "generation label: --set ingest.topic_generation=<label> (for example the date "
            "it was recreated)"
        )
    earlier = sorted(k for k in committed if k not in (key, UNKNOWN))
    if earlier:
        log.warning(
            "topic %s was recreated: its offsets are written anew under %s (the ledger "
            "also holds %s)",
            topic,
            key or "no identity",
            ", ".join(earlier),
        )
    return key
