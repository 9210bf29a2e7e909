"""The streaming ingest: Kafka -> validate -> events (exactly once) + dead letters.

`write_batch` is the `foreachBatch` function: named, typed, and given everything it needs as
one picklable `IngestSettings` (bound with functools.partial; no globals, no captured session).
Per micro-batch it validates the records once, COPYs the valid ones from the executors
(`sink.write_and_route`, one transaction per task with its offset ranges in the ledger), stores
the invalid ones and any the database rejected in the Delta dead-letter table, records the
batch in `clickstream_ingest_batches`, and logs one line. read = written + duplicates + dead.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.fields import EVENTS_SCHEMA, EVENTS_TABLE
from clickstream_pipeline.core.model import load_model
from clickstream_pipeline.core.schema import ROUTED_SCHEMA
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.core.spark import arrow_batches_bounded, session_conf_set
from clickstream_pipeline.ingest import dead_letters, openmetrics
from clickstream_pipeline.ingest.ledger import (
    BatchReport,
    offset_spans,
    record_batch,
    tenant_rollup_delays,
)
from clickstream_pipeline.ingest.sink import (
    SinkSettings,
    check_and_route,
    check_target_columns,
    write_and_route,
)
from clickstream_pipeline.ingest.source import read_kafka_stream
from clickstream_pipeline.ingest.tenants import tenant_freshness, utc
from clickstream_pipeline.ingest.topics import (
    UNKNOWN,
    TopicState,
    describe_topics,
    ledger_key,
    ledger_keys,
)
from clickstream_pipeline.ingest.transforms import Rules, validate
from clickstream_pipeline.warehouse.database import configured_params, retrying
from clickstream_pipeline.warehouse.rollup_runner import aggregate, runner_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestSettings:
    """What a micro-batch needs, picklable; `target` is the sink's, named per batch by `sink`."""

    query_name: str
    rules: Rules
    dead_letter_path: str
    checkpoint: str  # the query's checkpoint location (its id is kept there)
    target: SinkSettings  # database, table, COPY format and retries; its sink name is unset
    validation: Literal["worker", "spark"] = "worker"
    rollup_after_batch: bool = False
    rollup_in_background: bool = True
    max_tasks: int | None = None
    metrics: bool = False  # feed `openmetrics`: true once `start_ingest` serves it
    tenant_top: int = 10  # freshness per tenant: this many busiest and slowest (0: off)

    def sink(
        self, name: str, batch_id: int, ledger: Literal["span", "runs"] = "span"
    ) -> SinkSettings:
        return dataclasses.replace(self.target, sink=name, batch_id=batch_id, ledger=ledger)

    def retrying(self, action: Callable[[], Any]) -> Any:
        """`action` with the sink's retries of transient database errors."""
        return retrying(action, self.target.max_attempts, self.target.backoff_s)


KAFKA_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")
# The sink name (in the ledger) of records the worker left to Spark's rules
SPARK_RULES_SUFFIX = ":spark-rules"


def route(records: DataFrame, sink: SinkSettings, rules: Rules) -> DataFrame:
    """Kafka-shaped rows through Spark's rules and the sink; dead letters and counts, cached."""
    return (
        validate(records, rules)
        .mapInArrow(write_and_route(sink), ROUTED_SCHEMA)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )


def route_in_worker(
    records: DataFrame, sink: SinkSettings, rules: Rules, now: datetime
) -> DataFrame:
    """The same, validated in the Python worker (`arrow_validation`); records it leaves to
    Spark come back as kind "undecided"."""
    now_us = int(now.timestamp() * 1_000_000)
    return (
        records.select(*KAFKA_COLUMNS)
        .mapInArrow(check_and_route(sink, rules, now_us), ROUTED_SCHEMA)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )


def undecided_records(routed: DataFrame) -> DataFrame:
    """The raw Kafka rows the worker left to Spark's rules."""
    return as_kafka_records(routed.filter(F.col("kind") == "undecided"))


def as_kafka_records(rows: DataFrame) -> DataFrame:
    """Rows with raw key, value and Kafka coordinates (dead letters, undecided records) in the
    Kafka source's shape, for validation."""
    return rows.select(
        F.col("raw_key").alias("key"),
        F.col("raw_value").alias("value"),
        "topic",
        "partition",
        "offset",
        F.col("kafka_timestamp").alias("timestamp"),
    )


def ingest_settings(cfg: Config, secrets: Secrets) -> IngestSettings:
    params = configured_params(cfg, secrets)
    model = load_model(cfg.ingest.model)
    target = SinkSettings(
        connect_kwargs=params.psycopg_kwargs(
            cfg.database.application_name, cfg.database.connect_timeout_s
        ),
        schema_name=EVENTS_SCHEMA,
        table_name=EVENTS_TABLE,
        sink="",
        batch_id=-1,
        copy_format=cfg.ingest.sink_copy_format,
        max_attempts=cfg.ingest.sink_max_attempts,
        backoff_s=cfg.ingest.sink_backoff_s,
        tenant_rows=cfg.ingest.tenant_freshness_top > 0,
        buffer_bytes=cfg.ingest.task_buffer_bytes,
        columns=model.event_columns,
    )
    return IngestSettings(
        query_name=cfg.ingest.query_name,
        rules=Rules(model, cfg.ingest.max_message_bytes),
        dead_letter_path=cfg.dead_letter_path,
        checkpoint=cfg.checkpoint_location,
        target=target,
        validation=cfg.ingest.validation,
        rollup_after_batch=cfg.ingest.rollup_after_batch,
        rollup_in_background=cfg.ingest.rollup_in_background,
        max_tasks=cfg.ingest.max_tasks,
        tenant_top=cfg.ingest.tenant_freshness_top,
    )


def with_ledger_keys(
    settings: IngestSettings, cfg: Config, topics: dict[str, TopicState]
) -> IngestSettings:
    """The settings with each subscribed topic's identity in the offset ledger (`topics`):
    checked against the ledger before the first batch, so a recreated topic is never taken for
    the old one."""
    generation = cfg.ingest.topic_generation
    keys = ledger_keys(
        settings.target.connect_kwargs,
        settings.query_name,
        topics,
        generation,
        settings.target.max_attempts,
    )
    target = dataclasses.replace(
        settings.target, topic_ids=keys, default_topic_id=ledger_key(UNKNOWN, generation)
    )
    return dataclasses.replace(settings, target=target)


def write_batch(batch_df: DataFrame, batch_id: int, *, settings: IngestSettings) -> None:
    """The foreachBatch function (bind `settings` with functools.partial)."""
    process_batch(batch_df, batch_id, settings)


def default_parallelism(spark: SparkSession) -> int:
    """The cores Spark runs tasks on (2 under local[2]); 8 where the session cannot say."""
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect has no SparkContext
        return int(spark.conf.get("spark.default.parallelism", "8") or 8)


def streaming_query_id(spark: SparkSession, checkpoint: str) -> str | None:
    """The running query's id, stable across restarts from one checkpoint and new with a new
    one: a local property of the batch's jobs where there is a SparkContext, else (Spark
    Connect) the `metadata` file Spark keeps it in at the checkpoint's root."""
    try:
        context = spark.sparkContext
    except Exception:  # Spark Connect has no SparkContext
        context = None
    if context is not None:
        return context.getLocalProperty("sql.streaming.queryId")
    if not checkpoint:
        return None
    row = spark.read.json(f"{checkpoint.rstrip('/')}/metadata").first()
    return None if row is None else str(row["id"])


def process_batch(batch_df: DataFrame, batch_id: int, settings: IngestSettings) -> BatchReport:
    """One micro-batch into events and the dead-letter store, exactly once; returns its counts.

    The batch is read and parsed once: a single `mapInArrow` pass COPYs the valid rows and
    returns the dead letters and per-partition counts, which alone are cached.
    """
    started = time.monotonic()
    started_at = datetime.now(UTC)
    spark = batch_df.sparkSession
    sink = settings.sink(settings.query_name, batch_id)
    records = batch_df.coalesce(settings.max_tasks or default_parallelism(spark))
    if settings.validation == "worker":
        passes = [route_in_worker(records, sink, settings.rules, started_at)]
    else:
        passes = [route(records, sink, settings.rules)]
    tallies = "kind IN ('stats', 'tenant')"  # both in one Spark job; a SQL text: one Py4J call
    try:
        reasons: dict[str, int] = {}
        counts = passes[0].filter(tallies).collect()
        if any(r["undecided"] for r in counts if r["kind"] == "stats"):
            name = settings.query_name + SPARK_RULES_SUFFIX
            left = undecided_records(passes[0])
            passes.append(route(left, settings.sink(name, batch_id, "runs"), settings.rules))
            counts += passes[1].filter(tallies).collect()
        stats = [r for r in counts if r["kind"] == "stats"]
        sink_s = time.monotonic() - started
        rows_dead = sum(r["dead"] for r in stats)
        if rows_dead:
            dead = functools.reduce(
                DataFrame.unionByName, [p.filter(F.col("kind") == "dead") for p in passes]
            )
            if settings.metrics:  # from the cached rows, before raw records are joined in
                counted = dead.groupBy("reason").count().collect()
                reasons = {r["reason"]: r["count"] for r in counted}
            if any(r["db_rejected"] for r in stats):
                dead = _with_raw_records(dead, batch_df)
            query_id = streaming_query_id(spark, settings.checkpoint)
            dead_letters.append(
                settings.dead_letter_path,
                dead_letters.rows(dead, batch_id, settings.query_name),
                f"dead-letters:{query_id or settings.query_name}",
                batch_id,
            )
    finally:
        for routed in passes:
            routed.unpersist()
    committed_at = datetime.now(UTC)
    dead_s = time.monotonic() - started - sink_s
    delays = [
        (committed_at - utc(r[key])).total_seconds()
        for r in stats
        for key in ("oldest", "newest")
        if r[key] is not None
    ]
    tenants = tenant_freshness(
        (r for r in counts if r["kind"] == "tenant"), committed_at, settings.tenant_top
    )
    report = BatchReport(
        batch_id=batch_id,
        rows_read=sum(r["rows_in"] for r in stats),
        rows_written=sum(r["written"] for r in stats),
        rows_duplicate=sum(r["duplicates"] for r in stats),
        rows_dead=rows_dead,
        offsets=offset_spans(stats),
        seconds=time.monotonic() - started,
        max_delay_s=max(delays) if delays else None,
        min_delay_s=min(delays) if delays else None,
    )
    recorded = time.monotonic()
    lag = settings.retrying(
        lambda: record_batch(
            settings.target.connect_kwargs,
            settings.query_name,
            report,
            started_at,
            committed_at,
            tenants,
            read_rollup_lag=settings.metrics,
        )
    )
    rollups_started = time.monotonic()
    if settings.rollup_after_batch and report.rows_written:
        if settings.rollup_in_background:
            runner_for(settings.query_name, functools.partial(_run_rollups, settings)).request()
        else:
            _run_rollups(settings)
    if settings.metrics:
        phases = {
            "sink": sink_s,
            "dead_letters": dead_s,
            "batch_record": rollups_started - recorded,
        }
        phases["rollups"] = time.monotonic() - rollups_started
        openmetrics.observe_batch(
            settings.query_name, report, phases, delays, reasons, tenants, lag
        )
    log.info(
        "batch %d: read %d, written %d, duplicates skipped %d, dead-lettered %d in %.2fs "
        "(%.0f rows/s; read+sink %.2fs, dead letters %.2fs, rollups %.2fs); delay %s; "
        "offsets %s%s",
        batch_id,
        report.rows_read,
        report.rows_written,
        report.rows_duplicate,
        rows_dead,
        report.seconds,
        report.rows_read / report.seconds if report.seconds else 0.0,
        sink_s,
        report.seconds - sink_s,
        time.monotonic() - rollups_started,
        f"{report.min_delay_s:.1f}-{report.max_delay_s:.1f}s" if delays else "-",
        json.dumps(report.offsets),
        "" if report.balanced else " UNBALANCED",
    )
    if not report.balanced:
        raise RuntimeError(f"batch {batch_id} does not balance: {report}")
    return report


def _with_raw_records(dead: DataFrame, batch_df: DataFrame) -> DataFrame:
    """Fill raw key and value of rows the database refused from the micro-batch itself."""
    raw = batch_df.select(
        "topic",
        "partition",
        "offset",
        F.col("key").alias("batch_key"),
        F.col("value").alias("batch_value"),
    )
    return (
        dead.join(raw, ["topic", "partition", "offset"], "left")
        .withColumn("raw_key", F.coalesce("raw_key", "batch_key"))
        .withColumn("raw_value", F.coalesce("raw_value", "batch_value"))
        .drop("batch_key", "batch_value")
    )


def _run_rollups(settings: IngestSettings) -> None:
    stamped = settings.retrying(lambda: aggregate(settings.target.connect_kwargs))
    ours = [batch for query, batch in stamped if query == settings.query_name]
    if settings.metrics and ours:
        delays = settings.retrying(
            lambda: tenant_rollup_delays(
                settings.target.connect_kwargs, settings.query_name, max(ours)
            )
        )
        openmetrics.observe_rollup(settings.query_name, delays)


CHECKPOINT_MANAGER = "spark.sql.streaming.checkpointFileManagerClass"
IN_PLACE_CHECKPOINTS = (
    "org.apache.spark.internal.io.cloud.AbortableStreamBasedCheckpointFileManager"
)


def start_ingest(spark: SparkSession, cfg: Config, secrets: Secrets) -> StreamingQuery:
    """Start the query: Kafka source, foreachBatch sink, checkpoint from config."""
    topics = describe_topics(cfg.kafka, secrets)  # once: ledger keys and the batch allowance
    settings = with_ledger_keys(ingest_settings(cfg, secrets), cfg, topics)
    check_target_columns(settings.target)
    arrow_batches_bounded(spark, cfg.ingest.arrow_batch_bytes)
    dead_letters.ensure_table(spark, settings.dead_letter_path)
    if cfg.ingest.metrics_port is not None:
        # batches count their dead letters by reason only where someone can scrape the counts
        served = openmetrics.export(spark, cfg.ingest.metrics_port, remote=bool(cfg.spark.remote))
        settings = dataclasses.replace(settings, metrics=served)
    writer = (
        read_kafka_stream(spark, cfg.kafka, secrets, sum(len(t.ends) for t in topics.values()))
        .writeStream.foreachBatch(functools.partial(write_batch, settings=settings))
        .option("checkpointLocation", cfg.checkpoint_location)
        .queryName(cfg.ingest.query_name)
    )
    if cfg.ingest.trigger == "available_now":
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=cfg.ingest.trigger_interval)
    in_place = cfg.storage.s3a_checkpoint_in_place and cfg.checkpoint_location.startswith("s3a:")
    # for this query only: its logs take the setting when it starts
    with session_conf_set(spark, CHECKPOINT_MANAGER, IN_PLACE_CHECKPOINTS if in_place else None):
        query = writer.start()
    log.info(
        "ingest query %s started: checkpoint %s, dead letters %s",
        cfg.ingest.query_name,
        cfg.checkpoint_location,
        settings.dead_letter_path,
    )
    return query


@dataclass(frozen=True)
class ReplayReport:
    considered: int
    written: int
    duplicates: int
    still_dead: dict[str, int]


def replay_dead_letters(
    spark: SparkSession, cfg: Config, secrets: Secrets, reason: str | None = None
) -> ReplayReport:
    """Re-validate stored dead letters with today's rules and config; write those now valid.

    Written rows go through the same sink under the name `<query>:replay`, so replaying twice
    writes nothing twice; they are marked `replayed_at`. The others stay, with their new reason.
    """
    topics = describe_topics(cfg.kafka, secrets)
    settings = with_ledger_keys(ingest_settings(cfg, secrets), cfg, topics)
    check_target_columns(settings.target)
    arrow_batches_bounded(spark, cfg.ingest.arrow_batch_bytes)
    letters = dead_letters.read(spark, settings.dead_letter_path).filter(
        F.col("query_name") == settings.query_name
    )
    if reason is not None:
        letters = letters.filter(F.col("reason") == reason)
    records = as_kafka_records(letters)
    # one task per Kafka partition, each recording its exact runs of offsets in the ledger
    records = records.repartition("topic", "partition").persist(StorageLevel.MEMORY_AND_DISK)
    try:
        sink = settings.sink(f"{settings.query_name}:replay", batch_id=-1, ledger="runs")
        routed = route(records, sink, settings.rules)
        stats = routed.filter(F.col("kind") == "stats").collect()
        still = routed.filter(F.col("kind") == "dead").select(
            "topic", "partition", "offset", "reason"
        )
        still_dead = {r["reason"]: r["count"] for r in still.groupBy("reason").count().collect()}
        done = (
            records.select("topic", "partition", "offset")
            .join(still, ["topic", "partition", "offset"], "left_anti")
            .withColumn("query_name", F.lit(settings.query_name))
        )
        dead_letters.mark_replayed(spark, settings.dead_letter_path, done)
        routed.unpersist()
    finally:
        records.unpersist()
    report = ReplayReport(
        considered=sum(r["rows_in"] for r in stats),
        written=sum(r["written"] for r in stats),
        duplicates=sum(r["duplicates"] for r in stats),
        still_dead=still_dead,
    )
    log.info(
        "replayed %d dead letters: %d written, %d already written, still dead: %s",
        report.considered,
        report.written,
        report.duplicates,
        still_dead or "none",
    )
    return report
