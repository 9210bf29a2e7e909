"""The smoke path: a small run of the real ingest, Kafka -> Spark -> events, checkpoint on the
lake.

It proves the real parts work together on a fresh topic: N lab-format messages (the lab's six
fields only) are produced, the ingest query of `stream.start_ingest` reads them with an
available-now trigger under a query name of its own, validates them and COPYs them into
`events` exactly once, keeping its checkpoint under `storage.checkpoint_root` (s3a:// in the
local config). The demo prints the result; the integration test checks it on both servers.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from pyspark.sql import SparkSession

from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.fields import EVENTS_SCHEMA, EVENTS_TABLE
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.ingest.sink import quote_ident
from clickstream_pipeline.ingest.source import ClientConf, producer_config
from clickstream_pipeline.ingest.stream import start_ingest
from clickstream_pipeline.traffic.generator import lab_uniform_events
from clickstream_pipeline.traffic.producer import (
    SendOptions,
    create_topic,
    send_events,
    target_defaults,
)
from clickstream_pipeline.warehouse.database import configured_params, fetch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmokeResult:
    run_id: str
    topic: str
    sent: int
    rows_in_db: int
    distinct_offsets: int
    checkpoint: str
    seconds: float


def produce(conf: ClientConf, topic: str, messages: int, seed: int, eventhubs: bool) -> int:
    """Send `messages` lab-format messages; returns how many were acknowledged (raises if any
    failed)."""
    stats = send_events(
        conf,
        lab_uniform_events(seed),
        SendOptions(
            topic=topic,
            count=messages,
            lab_fields_only=True,
            progress=False,
            **target_defaults(eventhubs),
        ),
    )
    if not stats.ok:
        raise RuntimeError(f"smoke produce failed: {stats.summary(topic)}")
    return stats.acked


def smoke_config(cfg: Config, run_id: str, topic: str) -> Config:
    """The ingest's config for one smoke run: its topic, query name and available-now."""
    return cfg.model_copy(
        update={
            "kafka": cfg.kafka.model_copy(
                update={"topics": [topic], "topic_pattern": None, "starting_offsets": "earliest"}
            ),
            "ingest": cfg.ingest.model_copy(
                update={"query_name": f"smoke-{run_id}", "trigger": "available_now"}
            ),
        }
    )


def run_smoke(
    spark: SparkSession, cfg: Config, secrets: Secrets, messages: int = 1000, seed: int = 7
) -> SmokeResult:
    run_id = uuid.uuid4().hex[:12]
    topic = f"smoke-{run_id}"
    started = time.monotonic()
    conf = producer_config(cfg.kafka, secrets)
    create_topic(conf, topic, partitions=2)
    sent = produce(conf, topic, messages, seed, cfg.kafka.security == "eventhubs")
    log.info("smoke %s: produced %d messages to %s", run_id, sent, topic)

    run_cfg = smoke_config(cfg, run_id, topic)
    query = start_ingest(spark, run_cfg, secrets)
    query.awaitTermination()
    if query.exception() is not None:
        raise RuntimeError(f"smoke stream failed: {query.exception()}")

    params = configured_params(cfg, secrets)
    table = f"{quote_ident(EVENTS_SCHEMA)}.{quote_ident(EVENTS_TABLE)}"
    ((rows, distinct),) = fetch(
        params,
        "SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) "  # noqa: S608
        f"FROM {table} WHERE kafka_topic = %s",
        (topic,),
    )
    return SmokeResult(
        run_id,
        topic,
        sent,
        rows,
        distinct,
        run_cfg.checkpoint_location,
        round(time.monotonic() - started, 1),
    )
