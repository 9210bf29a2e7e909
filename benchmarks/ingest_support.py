"""What the end-to-end and freshness benchmarks share: topics, the ingest config, memory."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pyspark.sql import SparkSession

from benchmarks.common import _cmdline, descendants, say, vm_kib
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


@dataclass
class MemorySampler:
    """Peak memory of the driver JVM (VmHWM) and the Python workers it forks (every 0.5 s)."""

    jvm: int
    interval_s: float = 0.5
    worker_hwm_kib: dict[int, int] = field(default_factory=dict)
    workers_rss_peak_kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        total = 0
        for pid in descendants(self.jvm):
            if "pyspark" not in _cmdline(pid):
                continue
            self.worker_hwm_kib[pid] = max(self.worker_hwm_kib.get(pid, 0), vm_kib(pid, "VmHWM"))
            total += vm_kib(pid, "VmRSS")
        self.workers_rss_peak_kib = max(self.workers_rss_peak_kib, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def figures(self) -> dict[str, float]:
        return {
            "driver_jvm_peak_mib": vm_kib(self.jvm, "VmHWM") / 1024,
            "python_worker_peak_mib": max(self.worker_hwm_kib.values(), default=0) / 1024,
            "python_workers_peak_total_mib": self.workers_rss_peak_kib / 1024,
            "python_worker_processes": len(self.worker_hwm_kib),
        }


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(every_s)
