"""Large messages: N lab messages padded to `--message-bytes` through the ingest's micro-batch
twice, with the job's byte bounds and as before them (rows only); the Python workers' peak
memory, or how the run failed (docs/outages.md)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from typing import Any

from confluent_kafka import Producer
from pyspark import SparkContext

from benchmarks.common import PeakMemory, jvm_pid, read_topic
from benchmarks.harness import Scenario, say, scratch_db
from clickstream_pipeline.core import spark as sparks
from clickstream_pipeline.ingest.stream import ingest_settings, process_batch
from devkit.db import execute
from devkit.stack import fresh_topic, secrets_for


def padded_message(size: int, event_id: int) -> bytes:
    """A valid lab message of exactly `size` bytes (an extra field pads it)."""
    body: dict[str, Any] = {
        "customer_id": 1 + event_id % 1000,
        "event_type": "click",
        "country": "India",
        "browser": "chrome",
        "device_id": 1,
        "session_id": 1,
        "event_id": event_id,
        "pad": "",
    }
    body["pad"] = "x" * (size - len(json.dumps(body)))
    return json.dumps(body).encode()


def failure(exc: Exception) -> str:
    """The cause of a run's failure, and whether the JVM went with it."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    cause = ([x for x in lines if "Exception:" in x or "Error:" in x] or lines)[-1].strip()
    time.sleep(1)
    jvm = getattr(SparkContext._gateway, "proc", None)
    return (
        f"the JVM exited with {jvm.returncode}: " if jvm and jvm.poll() is not None else ""
    ) + cause


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg, secrets, n, size = args.cfg, args.secrets, args.messages, args.message_bytes
    results: dict[str, Any] = {"messages": n, "message_bytes": size}
    conf, most = args.kafka, 2 * size + (1 << 20)
    with (
        fresh_topic(conf, "bench-large", 2, {"max.message.bytes": str(most)}) as topic,
        scratch_db(secrets, "bench_large") as db,
    ):
        producer = Producer({**conf, "message.max.bytes": most})
        for i in range(n):
            producer.produce(topic, padded_message(size, i + 1))
            producer.poll(0)
        if producer.flush(120):
            raise RuntimeError("messages not acknowledged")
        say(f"topic {topic}: {n:,} messages of {size:,} bytes")
        settings = ingest_settings(cfg, secrets_for(secrets, db))
        unbounded = dataclasses.replace(settings.target, buffer_bytes=2**62)
        before = dataclasses.replace(settings, target=unbounded)
        runs = {  # bounded first: the run before the bounds may take the JVM down
            "bounded (the job's settings)": (settings, None),
            "before (rows only, whole task held)": (before, sparks.ARROW_NO_BYTE_BOUND),
        }
        spark = sparks.build_spark(cfg, secrets)
        sparks.arrow_batches_bounded(spark, cfg.ingest.arrow_batch_bytes)
        try:
            raw = read_topic(spark, cfg, secrets, topic)
            for batch_id, (name, (run, arrow_bytes)) in enumerate(runs.items()):
                execute(db, "TRUNCATE events, clickstream_ingest_ledger")
                started = time.perf_counter()
                try:
                    with (
                        PeakMemory(jvm_pid(spark), "pyspark", interval_s=0.05) as memory,
                        sparks.session_conf_set(
                            spark, sparks.ARROW_MAX_BYTES_PER_BATCH, arrow_bytes
                        ),
                    ):
                        report = process_batch(raw, batch_id, run)
                except Exception as exc:
                    results[name] = {"failed": failure(exc)[:300]}
                    say(f"{name}: FAILED ({results[name]['failed']})")
                    break
                if report.rows_written != n:
                    raise RuntimeError(f"{name}: {report.rows_written} of {n} written")
                peak = max(memory.marked_peak_mib.values(), default=0.0)
                seconds = time.perf_counter() - started
                results[name] = {"peak_worker_mib": round(peak, 1), "seconds": seconds}
                say(f"{name}: Python worker peak {peak:,.0f} MiB")
        finally:
            with contextlib.suppress(Exception):  # a JVM gone already
                spark.stop()
    return results


SCENARIO = Scenario(
    "large_messages",
    __doc__ or "",
    run,
    flags={"messages": 400, "message_bytes": 1_000_000},
    quick={"messages": 20},
    rows=lambda f: [
        [name, str(r.get("peak_worker_mib", "")), r.get("failed", "")]
        for name, r in f.items()
        if isinstance(r, dict) and name not in ("machine", "targets")
    ],
    columns=("run", "Python worker peak MiB", "failed"),
    study=True,
)

if __name__ == "__main__":
    SCENARIO.main()
