"""Streaming progress in one readable line per micro-batch, wherever the query runs.

`ProgressLogger` is a `StreamingQueryListener`: for each finished micro-batch it logs query name,
batch id, input rows, duration, rows/s and each source's offsets (`format_progress`, a pure
function of Spark's progress JSON). The line goes to Python logging (readable locally, the
driver's stderr on a cluster) and to Spark's log4j (the cluster's driver log; silent locally,
where the session's log level is WARN).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQueryListener
from pyspark.sql.streaming.listener import (
    QueryIdleEvent,
    QueryProgressEvent,
    QueryStartedEvent,
    QueryTerminatedEvent,
)

log = logging.getLogger(__name__)


def format_progress(progress: Mapping[str, Any]) -> str:
    """One line from a `StreamingQueryProgress` as JSON (`json.loads(progress.json)`)."""
    rows = int(progress.get("numInputRows") or 0)
    seconds = (progress.get("durationMs") or {}).get("triggerExecution", 0) / 1000
    rate = progress.get("processedRowsPerSecond")
    sources = "; ".join(_source_offsets(s) for s in progress.get("sources") or [])
    return (
        f"query {progress.get('name') or progress.get('id')} batch {progress.get('batchId')}: "
        f"{rows} rows in {seconds:.2f}s ({float(rate or 0):.0f} rows/s)"
        + (f"; offsets {sources}" if sources else "")
    )


def _source_offsets(source: Mapping[str, Any]) -> str:
    start, end = source.get("startOffset"), source.get("endOffset")
    if isinstance(end, dict) and all(isinstance(v, dict) for v in end.values()):
        # Kafka: {"topic": {"partition": offset}}; the first batch has no start offset
        starts = start if isinstance(start, dict) else {}
        return " ".join(
            f"{topic}/{partition} {starts.get(topic, {}).get(partition, '')}->{offset}"
            for topic, partitions in sorted(end.items())
            for partition, offset in sorted(partitions.items(), key=lambda kv: int(kv[0]))
        )
    return f"{_compact(start)} -> {_compact(end)}"


def _compact(value: Any) -> str:
    return "-" if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


class ProgressLogger(StreamingQueryListener):
    """Logs each query's start, every micro-batch's progress, and its end."""

    def __init__(self, jvm_logger: Any | None = None) -> None:
        self._jvm_logger = jvm_logger

    def _emit(self, line: str, level: int = logging.INFO) -> None:
        log.log(level, "%s", line)
        if self._jvm_logger is not None:
            try:
                (self._jvm_logger.warn if level >= logging.WARNING else self._jvm_logger.info)(line)
            except Exception:  # the JVM is going away; the Python line was written
                self._jvm_logger = None

    def onQueryStarted(self, event: QueryStartedEvent) -> None:
        self._emit(f"query {event.name or event.id} started (id {event.id}, run {event.runId})")

    def onQueryProgress(self, event: QueryProgressEvent) -> None:
        self._emit(format_progress(json.loads(event.progress.json)))

    def onQueryIdle(self, event: QueryIdleEvent) -> None:
        pass  # an idle trigger every few seconds would drown the batch lines

    def onQueryTerminated(self, event: QueryTerminatedEvent) -> None:
        if event.exception:
            first_line = event.exception.strip().splitlines()[0]
            self._emit(f"query {event.id} failed: {first_line}", logging.WARNING)
        else:
            self._emit(f"query {event.id} stopped")


def flush_progress(spark: SparkSession, timeout_s: float = 10.0) -> None:
    """Wait until listeners have seen every event (a job's last batch line before it exits)."""
    try:
        spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty(int(timeout_s * 1000))
    except Exception:  # Spark Connect, or events still queued after the timeout
        log.debug("listener events not drained")


def register_progress_logger(spark: SparkSession) -> ProgressLogger:
    """Add a `ProgressLogger` to the session's streams (log4j too where the JVM is at hand)."""
    jvm_logger = None
    jvm = getattr(spark, "_jvm", None)  # absent under Spark Connect
    if jvm is not None:
        try:
            jvm_logger = jvm.org.apache.logging.log4j.LogManager.getLogger(__name__)
        except Exception:
            log.debug("log4j not reachable; progress goes to Python logging only")
    listener = ProgressLogger(jvm_logger)
    spark.streams.addListener(listener)
    return listener
