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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql.streaming import StreamingQuery

from clickstream_pipeline.core.config import Config, IngestConfig, KafkaConfig
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
from clickstream_pipeline.ingest.tenants import TenantFreshness, tenant_freshness, utc
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
    """What a micro-batch needs, picklable: the `[ingest]` config as it is, and the values the
    executors take from it (`rules`, and `target`, the sink's, named per batch by `sink`)."""

    ingest: IngestConfig
    rules: Rules
    dead_letter_path: str
    checkpoint: str  # the query's checkpoint location (its id is kept there)
    target: SinkSettings  # database, table, COPY format and retries; its sink name is unset
    metrics: bool = False  # feed `openmetrics`: true once `start_ingest` serves it

    @property
    def query_name(self) -> str:
        return self.ingest.query_name

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
    """The batches' settings from `cfg`; every `[ingest]` setting the executors need is passed
    on here (tests/unit/test_ingest_settings.py fails for one left at its default)."""
    ingest, database = cfg.ingest, cfg.database
    model = load_model(ingest.model)
    params = configured_params(cfg, secrets)
    target = SinkSettings(
        connect_kwargs=params.psycopg_kwargs(database.application_name, database.connect_timeout_s),
        schema_name=EVENTS_SCHEMA,
        table_name=EVENTS_TABLE,
        sink="",
        batch_id=-1,
        copy_format=ingest.sink_copy_format,
        max_attempts=ingest.sink_max_attempts,
        backoff_s=ingest.sink_backoff_s,
        tenant_rows=ingest.tenant_freshness_top > 0,
        buffer_bytes=ingest.task_buffer_bytes,
        model=model,
    )
    return IngestSettings(
        ingest=ingest,
        rules=Rules(model, ingest.max_message_bytes),
        dead_letter_path=cfg.dead_letter_path,
        checkpoint=cfg.checkpoint_location,
        target=target,
    )


def with_ledger_keys(settings: IngestSettings, topics: dict[str, TopicState]) -> IngestSettings:
    """The settings with each subscribed topic's identity in the offset ledger (`topics`):
    checked against the ledger before the first batch, so a recreated topic is never taken for
    the old one."""
    generation = settings.ingest.topic_generation
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
    started, started_at = time.monotonic(), datetime.now(UTC)
    with cached_passes() as passes:
        counts = write_events(batch_df, batch_id, settings, started_at, passes)
        stats = [r for r in counts if r["kind"] == "stats"]
        sink_s = time.monotonic() - started
        reasons = store_dead_letters(batch_df, batch_id, settings, passes, stats)
    committed_at = datetime.now(UTC)
    dead_s = time.monotonic() - started - sink_s
    delays = event_delays(stats, committed_at)
    tenants = tenant_freshness(
        (r for r in counts if r["kind"] == "tenant"),
        committed_at,
        settings.ingest.tenant_freshness_top,
    )
    report = batch_report(batch_id, stats, delays, seconds=time.monotonic() - started)
    recorded = time.monotonic()
    lag = record_committed_batch(settings, report, started_at, committed_at, tenants)
    rollups_started = time.monotonic()
    request_rollups(settings, report)
    if settings.metrics:
        phases = {
            "sink": sink_s,
            "dead_letters": dead_s,
            "batch_record": rollups_started - recorded,
            "rollups": time.monotonic() - rollups_started,
        }
        openmetrics.observe_batch(
            settings.query_name, report, phases, delays, reasons, tenants, lag
        )
    log_batch(report, sink_s, rollups_s=time.monotonic() - rollups_started)
    if not report.balanced:
        raise RuntimeError(f"batch {batch_id} does not balance: {report}")
    return report


@contextmanager
def cached_passes() -> Iterator[list[DataFrame]]:
    """Where a batch's routing passes go; their cached rows are released on the way out."""
    passes: list[DataFrame] = []
    try:
        yield passes
    finally:
        for routed in passes:
            routed.unpersist()


TALLIES = "kind IN ('stats', 'tenant')"  # both in one Spark job; a SQL text: one Py4J call


def write_events(
    batch_df: DataFrame,
    batch_id: int,
    settings: IngestSettings,
    now: datetime,
    passes: list[DataFrame],
) -> list[Row]:
    """COPY the batch's valid records from the executors, in a second pass for those the worker
    left to Spark's rules; returns the tasks' counts (kinds "stats" and "tenant"). Each pass's
    routed rows (dead letters and counts, cached) are added to `passes`."""
    passes.append(first_pass(batch_df, batch_id, settings, now))
    counts = passes[0].filter(TALLIES).collect()
    if any(r["undecided"] for r in counts if r["kind"] == "stats"):
        passes.append(spark_rules_pass(passes[0], batch_id, settings))
        counts += passes[1].filter(TALLIES).collect()
    return counts


def first_pass(
    batch_df: DataFrame, batch_id: int, settings: IngestSettings, now: datetime
) -> DataFrame:
    """The batch in at most `max_tasks` tasks, validated where `validation` says, routed."""
    sink = settings.sink(settings.query_name, batch_id)
    spark = batch_df.sparkSession
    records = batch_df.coalesce(settings.ingest.max_tasks or default_parallelism(spark))
    if settings.ingest.validation == "worker":
        return route_in_worker(records, sink, settings.rules, now)
    return route(records, sink, settings.rules)


def spark_rules_pass(first: DataFrame, batch_id: int, settings: IngestSettings) -> DataFrame:
    """The records the first pass left undecided, through Spark's rules (own sink name)."""
    sink = settings.sink(settings.query_name + SPARK_RULES_SUFFIX, batch_id, "runs")
    return route(undecided_records(first), sink, settings.rules)


def store_dead_letters(
    batch_df: DataFrame,
    batch_id: int,
    settings: IngestSettings,
    passes: list[DataFrame],
    stats: list[Row],
) -> dict[str, int]:
    """Append every pass's dead letters to the dead-letter table; returns them counted by
    reason when metrics are served (else empty)."""
    reasons: dict[str, int] = {}
    if not sum(r["dead"] for r in stats):
        return reasons
    dead = functools.reduce(
        DataFrame.unionByName, [p.filter(F.col("kind") == "dead") for p in passes]
    )
    if settings.metrics:  # from the cached rows, before raw records are joined in
        counted = dead.groupBy("reason").count().collect()
        reasons = {r["reason"]: r["count"] for r in counted}
    if any(r["db_rejected"] for r in stats):
        dead = _with_raw_records(dead, batch_df)
    query_id = streaming_query_id(batch_df.sparkSession, settings.checkpoint)
    dead_letters.append(
        settings.dead_letter_path,
        dead_letters.rows(dead, batch_id, settings.query_name),
        f"dead-letters:{query_id or settings.query_name}",
        batch_id,
    )
    return reasons


def event_delays(stats: list[Row], committed_at: datetime) -> list[float]:
    """Seconds from each partition's oldest and newest record to the commit."""
    return [
        (committed_at - utc(r[key])).total_seconds()
        for r in stats
        for key in ("oldest", "newest")
        if r[key] is not None
    ]


def batch_report(
    batch_id: int, stats: list[Row], delays: list[float], seconds: float
) -> BatchReport:
    return BatchReport(
        batch_id=batch_id,
        rows_read=sum(r["rows_in"] for r in stats),
        rows_written=sum(r["written"] for r in stats),
        rows_duplicate=sum(r["duplicates"] for r in stats),
        rows_dead=sum(r["dead"] for r in stats),
        offsets=offset_spans(stats),
        seconds=seconds,
        max_delay_s=max(delays) if delays else None,
        min_delay_s=min(delays) if delays else None,
    )


def record_committed_batch(
    settings: IngestSettings,
    report: BatchReport,
    started_at: datetime,
    committed_at: datetime,
    tenants: list[TenantFreshness],
) -> dict[str, int]:
    """The batch's row in `clickstream_ingest_batches` (retried); returns the rollups' lag,
    read only when metrics are served."""
    return settings.retrying(
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


def request_rollups(settings: IngestSettings, report: BatchReport) -> None:
    """With `rollup_after_batch`, after a batch that wrote rows: the rollups, in the background
    runner or here (`rollup_in_background`)."""
    if not (settings.ingest.rollup_after_batch and report.rows_written):
        return
    if settings.ingest.rollup_in_background:
        runner_for(settings.query_name, functools.partial(_run_rollups, settings)).request()
    else:
        _run_rollups(settings)


def log_batch(report: BatchReport, sink_s: float, rollups_s: float) -> None:
    log.info(
        "batch %d: read %d, written %d, duplicates skipped %d, dead-lettered %d in %.2fs "
        "(%.0f rows/s; read+sink %.2fs, dead letters %.2fs, rollups %.2fs); delay %s; "
        "offsets %s%s",
        report.batch_id,
        report.rows_read,
        report.rows_written,
        report.rows_duplicate,
        report.rows_dead,
        report.seconds,
        report.rows_read / report.seconds if report.seconds else 0.0,
        sink_s,
        report.seconds - sink_s,
        rollups_s,
        "-"
        if report.min_delay_s is None
        else f"{report.min_delay_s:.1f}-{report.max_delay_s:.1f}s",
        json.dumps(report.offsets),
        "" if report.balanced else " UNBALANCED",
    )


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


# Spark 4.1's Kafka source fails the progress report of a batch run again from the offset log
# after a restart (SPARK-57438: its metrics read latest offsets it has not fetched yet). The batch
# has committed by then, so the query started again goes on from the next one.
SPARK_57438 = 'Cannot invoke "scala.collection.IterableOps.map(scala.Function1)" because the return value of "scala.Option.get()" is null'  # noqa: E501


def failed_after_its_batch(exc: Exception) -> bool:
    """A query failure known to come after the batch committed (so a restart loses nothing)."""
    return SPARK_57438 in str(exc)


NO_DATA = "Waiting for data to arrive"  # a trigger's status when it found nothing to read


def run_first_batch(query: StreamingQuery, name: str) -> None:
    """Let a query started for one small batch run it (or find no data), then stop it."""
    while query.isActive and query.lastProgress is None and query.status["message"] != NO_DATA:
        time.sleep(0.05)
    query.stop()
    if (failure := query.exception()) is not None:
        raise failure
    log.info("first batch of %s done: the query goes on with its full batch size", name)


def start_ingest(spark: SparkSession, cfg: Config, secrets: Secrets) -> StreamingQuery:
    """Start the query: Kafka source, foreachBatch sink, checkpoint from config."""
    topics = describe_topics(cfg.kafka, secrets)  # once: ledger keys and the batch allowance
    settings = with_ledger_keys(ingest_settings(cfg, secrets), topics)
    check_target_columns(settings.target)
    arrow_batches_bounded(spark, cfg.ingest.arrow_batch_bytes)
    dead_letters.ensure_table(spark, settings.dead_letter_path)
    if cfg.ingest.metrics_port is not None:
        # batches count their dead letters by reason only where someone can scrape the counts
        served = openmetrics.export(spark, cfg.ingest.metrics_port, remote=bool(cfg.spark.remote))
        settings = dataclasses.replace(settings, metrics=served)
    partitions = sum(len(t.ends) for t in topics.values())
    in_place = cfg.storage.s3a_checkpoint_in_place and cfg.checkpoint_location.startswith("s3a:")

    def start(kafka: KafkaConfig, trigger: dict[str, Any]) -> StreamingQuery:
        writer = (
            read_kafka_stream(spark, kafka, secrets, partitions)
            .writeStream.foreachBatch(functools.partial(write_batch, settings=settings))
            .option("checkpointLocation", cfg.checkpoint_location)
            .queryName(cfg.ingest.query_name)
            .trigger(**trigger)
        )
        # for this query only: its logs take the setting when it starts
        with session_conf_set(
            spark, CHECKPOINT_MANAGER, IN_PLACE_CHECKPOINTS if in_place else None
        ):
            return writer.start()

    first = cfg.kafka.first_batch_max_offsets
    most = cfg.kafka.max_offsets_per_trigger
    held = sum(end for t in topics.values() for end in t.ends.values())
    if first is not None and (most is None or first < most) and held > first:
        small = cfg.kafka.model_copy(update={"max_offsets_per_trigger": first})
        run_first_batch(start(small, {"processingTime": "1 day"}), cfg.ingest.query_name)
    if cfg.ingest.trigger == "available_now":
        query = start(cfg.kafka, {"availableNow": True})
    else:
        query = start(cfg.kafka, {"processingTime": cfg.ingest.trigger_interval})
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
    settings = with_ledger_keys(ingest_settings(cfg, secrets), topics)
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
