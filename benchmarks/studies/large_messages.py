"""Large messages: N valid messages of `--message-bytes` (1 MB) each, padded lab messages,
through the ingest's micro-batch (`process_batch`, both passes) twice on the same topic: with
the job's byte bounds, then as before them (Arrow batches bounded by rows only, a task holding
every record it returns); each run's peak memory of the Python workers (sampled with psutil
every 50 ms) or how it failed.

Run: `.venv/bin/python -m benchmarks.studies.large_messages [--messages 400]`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import uuid
from typing import Any

from confluent_kafka import Producer
from pyspark import SparkContext

from benchmarks.common import PeakMemory, benchmark_parser, finish
from benchmarks.end_to_end import jvm_pid
from benchmarks.harness import (
    STUDY_RESULTS,
    db_params,
    machine_facts,
    say,
    scratch_database,
    setup_env,
)
from benchmarks.stages import read_topic
from clickstream_pipeline.core.spark import (
    ARROW_MAX_BYTES_PER_BATCH,
    ARROW_NO_BYTE_BOUND,
    arrow_batches_bounded,
    build_spark,
    session_conf_set,
)
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.ingest.stream import ingest_settings, process_batch
from clickstream_pipeline.traffic.producer import create_topic, delete_topic
from devkit.db import execute
from devkit.stack import secrets_for


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Peak memory of the Python workers over a topic of large messages, before and bounded."""
    parser = benchmark_parser(__doc__, "20 messages")
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--message-bytes", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if args.quick:
        args.messages = 20
    cfg, secrets = setup_env(args.env)
    n, size = args.messages, args.message_bytes
    results: dict[str, Any] = {"machine": machine_facts(), "messages": n, "message_bytes": size}
    conf = producer_config(cfg.kafka, secrets)
    topic = f"bench-large-{uuid.uuid4().hex[:8]}"
    create_topic(conf, topic, 2, {"max.message.bytes": str(2 * size + (1 << 20))})
    try:
        producer = Producer({**conf, "message.max.bytes": 2 * size + (1 << 20)})
        for i in range(n):
            producer.produce(topic, padded_message(size, i + 1))
            producer.poll(0)
        if producer.flush(120):
            raise RuntimeError("messages not acknowledged")
        say(f"topic {topic}: {n:,} messages of {size:,} bytes")
        with scratch_database(db_params(secrets), "bench_large") as db:
            settings = ingest_settings(cfg, secrets_for(secrets, db))
            before = dataclasses.replace(
                settings, target=dataclasses.replace(settings.target, buffer_bytes=2**62)
            )
            # bounded first: the run before the bounds may take the JVM down
            runs = {
                "bounded (the job's settings)": (settings, None),
                "before (rows only, whole task held)": (before, ARROW_NO_BYTE_BOUND),
            }
            spark = build_spark(cfg, secrets)
            arrow_batches_bounded(spark, cfg.ingest.arrow_batch_bytes)
            try:
                raw = read_topic(spark, cfg, secrets, topic)
                for batch_id, (name, (run, arrow_bytes)) in enumerate(runs.items()):
                    execute(db, "TRUNCATE events, clickstream_ingest_ledger")
                    started = time.perf_counter()
                    try:
                        with (
                            PeakMemory(jvm_pid(spark), "pyspark", interval_s=0.05) as memory,
                            session_conf_set(spark, ARROW_MAX_BYTES_PER_BATCH, arrow_bytes),
                        ):
                            report = process_batch(raw, batch_id, run)
                    except Exception as exc:
                        lines = str(exc).strip().splitlines() or [type(exc).__name__]
                        causes = [x for x in lines if "Exception:" in x or "Error:" in x]
                        failure = (causes or lines)[-1].strip()
                        time.sleep(1)
                        jvm = getattr(SparkContext._gateway, "proc", None)
                        if jvm is not None and jvm.poll() is not None:
                            failure = f"the JVM exited with {jvm.returncode}: {failure}"
                        results[name] = {"failed": failure[:300]}
                        say(f"{name}: FAILED ({failure[:300]})")
                        break
                    seconds = time.perf_counter() - started
                    peak = max(memory.marked_peak_mib.values(), default=0.0)
                    if report.rows_written != n:
                        raise RuntimeError(f"{name}: {report.rows_written} of {n} written")
                    results[name] = {"peak_worker_mib": round(peak, 1), "seconds": seconds}
                    say(f"{name}: Python worker peak {peak:,.0f} MiB, {seconds:.1f}s")
            finally:
                with contextlib.suppress(Exception):  # a JVM gone already
                    spark.stop()
    finally:
        delete_topic(conf, topic)
    return finish("large_messages", args, results, STUDY_RESULTS)


if __name__ == "__main__":
    main()
