"""The ingest job's metrics for Prometheus: OpenMetrics text on `http://127.0.0.1:<port>/metrics`
(`ingest.metrics_port`), through `prometheus_client`.

`process_batch` adds each committed micro-batch (rows by outcome, dead letters by reason, its
phases, the Kafka-timestamp-to-commit delays, its time, its busiest and slowest tenants'
delays, the rollups' lag); `LagListener` sets the Kafka consumer
lag per partition and Spark's trigger phases from each progress event. Both run in the driver's
Python process, so under Spark Connect (where `foreachBatch` runs on the server) the client
serves nothing and says so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQueryListener
from pyspark.sql.streaming.listener import (
    QueryIdleEvent,
    QueryProgressEvent,
    QueryStartedEvent,
    QueryTerminatedEvent,
)

from clickstream_pipeline.ingest.ledger import BatchReport
from clickstream_pipeline.ingest.tenants import TenantFreshness

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)
BATCHES = Counter(
    "clickstream_ingest_batches", "Micro-batches committed", ["query"], registry=REGISTRY
)
ROWS = Counter(
    "clickstream_ingest_rows",
    "Records of committed micro-batches by outcome: read = written + duplicate + dead",
    ["query", "outcome"],
    registry=REGISTRY,
)
DEAD = Counter(
    "clickstream_ingest_dead_letters",
    "Records dead-lettered, by reason (the rule broken, or db_rejected)",
    ["query", "reason"],
    registry=REGISTRY,
)
PHASE = Histogram(
    "clickstream_ingest_phase_seconds",
    "Seconds per micro-batch in each phase: the sink's (sink, dead_letters, batch_record, "
    "rollups) and Spark's trigger phases (addBatch, walCommit, commitOffsets, ...)",
    ["query", "phase"],
    buckets=SECONDS,
    registry=REGISTRY,
)
DELAY = Histogram(
    "clickstream_ingest_delay_seconds",
    "Kafka timestamp to commit in events: each Kafka partition's oldest and newest record of a "
    "micro-batch",
    ["query"],
    buckets=SECONDS,
    registry=REGISTRY,
)
LAG = Gauge(
    "clickstream_ingest_kafka_lag_records",
    "Records behind the end of each Kafka partition after the last trigger",
    ["query", "topic", "partition"],
    registry=REGISTRY,
)
TENANT_DELAY = Gauge(
    "clickstream_ingest_tenant_delay_seconds",
    "Kafka timestamp to commit of each listed tenant's oldest record in the last micro-batch: "
    "its busiest and slowest customers (ingest.tenant_freshness_top of each), the others "
    'together as customer="other"',
    ["query", "customer"],
    registry=REGISTRY,
)
TENANT_ROWS = Gauge(
    "clickstream_ingest_tenant_rows",
    "Rows written in the last micro-batch per listed tenant (as for the delay)",
    ["query", "customer"],
    registry=REGISTRY,
)
TENANT_ROLLUP_DELAY = Gauge(
    "clickstream_ingest_tenant_rollup_delay_seconds",
    "Kafka timestamp of each listed tenant's oldest record to the moment every rollup held it, "
    "for the last micro-batch the rollups finished (tenants as for the delay to the commit)",
    ["query", "customer"],
    registry=REGISTRY,
)
ROLLUP_LAG = Gauge(
    "clickstream_rollup_lag_events",
    "Events committed but not yet in each rollup, read after each micro-batch",
    ["rollup"],
    registry=REGISTRY,
)
LAST_BATCH = Gauge(
    "clickstream_ingest_last_batch_timestamp_seconds",
    "When the last micro-batch committed (Unix time)",
    ["query"],
    registry=REGISTRY,
)

_served: dict[int, Any] = {}
_tenants_shown: dict[str, set[str]] = {}  # per query: the customer labels of its last batch
_rolled_up_shown: dict[str, set[str]] = {}  # the same for the last batch rolled up
_listening: set[int] = set()


def serve(port: int) -> bool:
    """Serve the registry on 127.0.0.1:`port` (once per process); False when the port is taken."""
    if port in _served:
        return True
    try:
        _served[port] = start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    except OSError as exc:
        log.warning("metrics not served: port %d: %s", port, exc)
        return False
    log.info("metrics on http://127.0.0.1:%d/metrics", port)
    return True


def reason_label(reason: str) -> str:
    """A bounded label: the rule's name, or `db_rejected` without the database's message."""
    return reason.split(":", 1)[0]


def export(spark: SparkSession, port: int, remote: bool = False) -> bool:
    """Serve the metrics and listen to the session's progress events (once per session);
    False where nothing is served (Spark Connect, or the port taken)."""
    if remote:
        log.warning("metrics not served: under Spark Connect the batches run on the server")
        return False
    if not serve(port):
        return False
    if id(spark) not in _listening:
        spark.streams.addListener(LagListener())
        _listening.add(id(spark))
    return True


def _relabel(
    shown: dict[str, set[str]], query: str, values: Mapping[Gauge, Mapping[str, float]]
) -> None:
    """Set per-tenant gauges of the same tenants to `values`, dropping the labels the last call
    set and this one does not."""
    labels = {label for by_label in values.values() for label in by_label}
    for gone in shown.get(query, set()) - labels:
        for gauge in values:
            gauge.remove(query, gone)
    shown[query] = labels
    for gauge, by_label in values.items():
        for label, value in by_label.items():
            gauge.labels(query, label).set(value)


def observe_rollup(query: str, delays: Mapping[str, float]) -> None:
    """The tenants of the query's last batch the rollups finished: their delay to the rollups."""
    _relabel(
        _rolled_up_shown, query, {TENANT_ROLLUP_DELAY: {k: max(v, 0.0) for k, v in delays.items()}}
    )


def observe_batch(
    query: str,
    report: BatchReport,
    phases: Mapping[str, float],
    delays: list[float],
    reasons: Mapping[str, int],
    tenants: Sequence[TenantFreshness] = (),
    rollup_lag: Mapping[str, int] | None = None,
) -> None:
    """A committed micro-batch: its counts, dead letters by reason, phases and delays, its
    tenants' freshness (only this batch's tenants stay labelled) and the rollups' lag."""
    BATCHES.labels(query).inc()
    _relabel(
        _tenants_shown,
        query,
        {
            TENANT_DELAY: {t.label: max(t.max_delay_s, 0.0) for t in tenants},
            TENANT_ROWS: {t.label: t.rows for t in tenants},
        },
    )
    for rollup, behind in (rollup_lag or {}).items():
        ROLLUP_LAG.labels(rollup).set(behind)
    counts = {
        "read": report.rows_read,
        "written": report.rows_written,
        "duplicate": report.rows_duplicate,
        "dead": report.rows_dead,
    }
    for outcome, n in counts.items():
        ROWS.labels(query, outcome).inc(n)
    for reason, n in reasons.items():
        DEAD.labels(query, reason_label(reason)).inc(n)
    for phase, seconds in phases.items():
        PHASE.labels(query, phase).observe(seconds)
    for delay in delays:
        DELAY.labels(query).observe(max(delay, 0.0))
    LAST_BATCH.labels(query).set_to_current_time()


def kafka_lag(source: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """(topic, partition) -> records behind the latest offset, from a Kafka source's progress."""
    end, latest = source.get("endOffset"), source.get("latestOffset")
    if not isinstance(end, dict) or not isinstance(latest, dict):
        return {}
    return {
        (topic, partition): max(int(offset) - int(end.get(topic, {}).get(partition, 0)), 0)
        for topic, partitions in latest.items()
        if isinstance(partitions, dict)
        for partition, offset in partitions.items()
    }


class LagListener(StreamingQueryListener):
    """Sets the consumer lag and Spark's trigger phases from each progress event."""

    def onQueryStarted(self, event: QueryStartedEvent) -> None:
        pass

    def onQueryProgress(self, event: QueryProgressEvent) -> None:
        progress = json.loads(event.progress.json)
        query = progress.get("name") or progress.get("id", "")
        for source in progress.get("sources", []):
            for (topic, partition), behind in kafka_lag(source).items():
                LAG.labels(query, topic, partition).set(behind)
        if progress.get("numInputRows"):  # a trigger that ran a batch
            for phase, ms in (progress.get("durationMs") or {}).items():
                PHASE.labels(query, phase).observe(ms / 1000)

    def onQueryIdle(self, event: QueryIdleEvent) -> None:
        pass

    def onQueryTerminated(self, event: QueryTerminatedEvent) -> None:
        pass
