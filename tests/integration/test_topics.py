"""A topic deleted and recreated under the same name: its new messages are written, never taken
for replays of the old ones; a ledger from before topic ids is adopted in place."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException

from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.errors import RecreatedTopicError
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.ingest.topics import UNKNOWN, TopicState, describe_topics, ledger_keys
from clickstream_pipeline.traffic.producer import create_topic, delete_topic
from devkit.db import query
from devkit.waits import wait_until
from tests.integration.ingest_support import (
    assert_exactly_once,
    batch_totals,
    new_topic,
    produce_mix,
)
from tests.integration.test_ingest import ingest_config, run_available_now


def with_fresh_checkpoint(cfg: Config, label: str) -> Config:
    """The same query (and so the same sink in the ledger) from a new checkpoint, as after
    Spark's failOnDataLoss forces a reset."""
    storage = cfg.storage.model_copy(
        update={"checkpoint_root": f"{cfg.storage.checkpoint_root.rstrip('/')}/{label}"}
    )
    return cfg.model_copy(update={"storage": storage})


def recreate(conf: dict, topic: str, partitions: int) -> None:
    delete_topic(conf, topic)

    def created() -> bool:  # the broker deletes asynchronously: retry until the name is free
        try:
            create_topic(conf, topic, partitions)
        except KafkaException:
            return False
        return True

    wait_until(created, 60, f"topic {topic} recreated", every_s=0.5)


def ledger_ids(db, sink: str, topic: str) -> set[str]:
    rows = query(
        db,
        "SELECT DISTINCT topic_id FROM clickstream_ingest_ledger WHERE sink = %s "
        "AND kafka_topic = %s",
        (sink, topic),
    )
    return {r[0] for r in rows}


def test_a_recreated_topic_is_written_anew_from_a_fresh_checkpoint(spark, tier, db, caplog):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 3_000, seed=31, malformed_share=0)
    cfg = ingest_config(tier.config, topic)
    run_available_now(spark, cfg, tier.secrets)
    (old_id,) = ledger_ids(db, cfg.ingest.query_name, topic)

    recreate(conf, topic, partitions=2)
    # fewer messages than before: every new offset is one the old topic's ledger holds
    sent.add(produce_mix(conf, topic, 2_000, seed=32, malformed_share=0, first_id=100_001))
    run_available_now(spark, with_fresh_checkpoint(cfg, "after-recreate"), tier.secrets)

    assert_exactly_once(db, sent)
    # the fresh checkpoint numbers its batches from 0 again: the records are the second run's
    _, read, written, duplicates, dead = batch_totals(db, cfg.ingest.query_name)
    assert (read, written, duplicates, dead) == (2_000, 2_000, 0, 0)
    new_ids = ledger_ids(db, cfg.ingest.query_name, topic) - {old_id}
    assert len(new_ids) == 1 and UNKNOWN not in new_ids
    assert f"topic {topic} was recreated" in caplog.text


def test_a_ledger_from_before_topic_ids_is_adopted_and_still_skips_replays(spark, tier, db):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 2_000, seed=33, malformed_share=0)
    cfg = ingest_config(tier.config, topic)
    run_available_now(spark, cfg, tier.secrets)
    sink = cfg.ingest.query_name
    (topic_id,) = ledger_ids(db, sink, topic)
    query(db, "UPDATE clickstream_ingest_ledger SET topic_id = '' WHERE sink = %s", (sink,))

    # a reset checkpoint replays everything: the adopted ranges skip all of it
    run_available_now(spark, with_fresh_checkpoint(cfg, "after-upgrade"), tier.secrets)

    assert_exactly_once(db, sent)
    _, read, written, duplicates, _ = batch_totals(db, sink)
    assert (read, written, duplicates) == (2_000, 0, 2_000)  # the second run's batches
    assert ledger_ids(db, sink, topic) == {topic_id}


def test_without_topic_ids_offsets_gone_backwards_are_refused_until_a_generation_is_set(tier, db):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=1)
    produce_mix(conf, topic, 10, seed=34, malformed_share=0)
    kafka = tier.config.kafka.model_copy(update={"topics": [topic]})
    described = describe_topics(kafka, tier.secrets)[topic]
    assert described.topic_id and described.ends == {0: 10}
    as_event_hubs = {topic: TopicState(UNKNOWN, described.ends)}  # a broker without topic ids
    sink = f"q-{topic}"
    query(
        db,
        """INSERT INTO clickstream_ingest_ledger (sink, kafka_topic, kafka_partition,
               start_offset, end_offset, batch_id, row_count)
           VALUES (%s, %s, 0, 0, 49, 3, 50)""",  # an earlier topic of this name had 50
        (sink, topic),
    )
    kwargs = db.psycopg_kwargs("test-topics", 5)

    with pytest.raises(RecreatedTopicError) as refused:
        ledger_keys(kwargs, sink, as_event_hubs, generation="")
    message = str(refused.value)
    for part in (repr(topic), "partition 0", "up to 49", "ends at offset 10", "topic_generation"):
        assert part in message, message

    keys = ledger_keys(kwargs, sink, as_event_hubs, generation="2026-12-05")
    assert keys == {topic: "generation:2026-12-05"}
    # with Kafka's id, the same ledger is no obstacle: those ranges are another incarnation's
    assert ledger_keys(kwargs, sink, {topic: described}, generation="") == {
        topic: described.topic_id
    }
