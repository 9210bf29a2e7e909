"""The smoke path: Kafka -> Spark Structured Streaming -> PostgreSQL, checkpoint on the lake.

It proves the three real parts work together: N lab-format messages are produced to a fresh
topic, a stream with an available-now trigger parses them and appends each micro-batch to
`smoke_events` over JDBC, keeping its checkpoint under `storage.checkpoint_root` (s3a:// in the
local config). The demo prints the result; the integration test checks it.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from dataclasses import dataclass

import pyspark.sql.functions as F
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg2 import sql
from pyspark.sql import DataFrame, SparkSession

from clickstream_pipeline.config import Config
from clickstream_pipeline.database import ConnectionParams, connect
from clickstream_pipeline.generator import lab_uniform_events
from clickstream_pipeline.producer import SendOptions, send_events, target_defaults
from clickstream_pipeline.schema import MESSAGE_SCHEMA
from clickstream_pipeline.secrets import Secrets
from clickstream_pipeline.source import ClientConf, producer_config, read_kafka_stream

log = logging.getLogger(__name__)

SMOKE_TABLE = "smoke_events"


@dataclass(frozen=True)
class SmokeResult:
    run_id: str
    topic: str
    sent: int
    rows_in_db: int
    distinct_offsets: int
    checkpoint: str
    seconds: float


def create_topic(conf: ClientConf, topic: str, partitions: int) -> None:
    admin = AdminClient(conf)
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
    )
    futures[topic].result(timeout=30)


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


def ensure_smoke_table(params: ConnectionParams) -> None:
    with connect(params) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS {} (
                       run_id text NOT NULL,
                       kafka_partition int NOT NULL,
                       kafka_offset bigint NOT NULL,
                       customer_id bigint, event_type text, country text, browser text,
                       device_id bigint, session_id bigint,
                       PRIMARY KEY (run_id, kafka_partition, kafka_offset))"""
            ).format(sql.Identifier(SMOKE_TABLE))
        )
    conn.close()


def parse_smoke(raw: DataFrame, run_id: str) -> DataFrame:
    parsed = F.from_json(F.col("value").cast("string"), MESSAGE_SCHEMA)
    return raw.select(
        F.lit(run_id).alias("run_id"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        parsed.alias("m"),
    ).select(
        "run_id",
        "kafka_partition",
        "kafka_offset",
        *[
            f"m.{c}"
            for c in ("customer_id", "event_type", "country", "browser", "device_id", "session_id")
        ],
    )


def write_smoke_batch(
    batch_df: DataFrame, batch_id: int, *, jdbc_url: str, jdbc_props: dict[str, str]
) -> None:
    """foreachBatch sink for the smoke path: plain JDBC append."""
    batch_df.write.jdbc(jdbc_url, SMOKE_TABLE, mode="append", properties=jdbc_props)
    log.info("smoke batch %d written", batch_id)


def run_smoke(
    spark: SparkSession, cfg: Config, secrets: Secrets, messages: int = 1000, seed: int = 7
) -> SmokeResult:
    run_id = uuid.uuid4().hex[:12]
    topic = f"smoke-{run_id}"
    params = ConnectionParams.from_jdbc_url(secrets["database"])
    checkpoint = f"{cfg.storage.checkpoint_root.rstrip('/')}/smoke/{run_id}"
    started = time.monotonic()

    conf = producer_config(cfg.kafka, secrets)
    create_topic(conf, topic, partitions=2)
    sent = produce(conf, topic, messages, seed, cfg.kafka.security == "eventhubs")
    log.info("smoke %s: produced %d messages to %s", run_id, sent, topic)
    ensure_smoke_table(params)

    kafka = cfg.kafka.model_copy(
        update={"topics": [topic], "topic_pattern": None, "starting_offsets": "earliest"}
    )
    sink = functools.partial(
        write_smoke_batch, jdbc_url=params.jdbc_url(), jdbc_props=params.jdbc_properties()
    )
    query = (
        parse_smoke(read_kafka_stream(spark, kafka, secrets), run_id)
        .writeStream.foreachBatch(sink)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .queryName(f"smoke-{run_id}")
        .start()
    )
    query.awaitTermination()
    if query.exception() is not None:
        raise RuntimeError(f"smoke stream failed: {query.exception()}")

    with connect(params) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM {} "
                "WHERE run_id = %s"
            ).format(sql.Identifier(SMOKE_TABLE)),
            (run_id,),
        )
        rows, distinct = cur.fetchone()
    conn.close()
    return SmokeResult(
        run_id, topic, sent, rows, distinct, checkpoint, round(time.monotonic() - started, 1)
    )
