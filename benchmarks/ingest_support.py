"""What the end-to-end and freshness benchmarks share: topics, the ingest config, waits."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator

from pyspark.sql import SparkSession

from benchmarks.common import say
from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.traffic.producer import create_topic, delete_topic


@contextlib.contextmanager
def fresh_topic(cfg: Config, secrets: Secrets, prefix: str, partitions: int = 4) -> Iterator[str]:
    conf = producer_config(cfg.kafka, secrets)
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    create_topic(conf, topic, partitions)
    say(f"topic {topic} ({partitions} partitions)")
    try:
        yield topic
    finally:
        delete_topic(conf, topic)


def ingest_config(cfg: Config, topic: str, query_name: str, **ingest: object) -> Config:
    return cfg.model_copy(
        update={
            "kafka": cfg.kafka.model_copy(
                update={
                    "topics": [topic],
                    "max_offsets_per_trigger": ingest.pop(
                        "max_offsets_per_trigger", cfg.kafka.max_offsets_per_trigger
                    ),
                }
            ),
            "ingest": cfg.ingest.model_copy(update={"query_name": query_name, **ingest}),
        }
    )


def delete_checkpoint(spark: SparkSession, location: str) -> None:
    """Remove the query's checkpoint (s3a:// or local) through Hadoop's file system."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(location)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    fs.delete(path, True)


def jvm_pid(spark: SparkSession) -> int:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return int(jvm.java.lang.ProcessHandle.current().pid())


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every_s)
