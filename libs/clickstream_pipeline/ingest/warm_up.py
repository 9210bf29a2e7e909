"""Warm-up: train the local session's class archive with what a local job does first.

Run by set-up: `python -m clickstream_pipeline.ingest.warm_up --env local` (about 45 s). It
starts a local session that writes the archive as its JVM exits (`core/class_archive.py`), runs
the workload, and stops; with an archive already there it says so and does nothing.
"""

from __future__ import annotations

import itertools
import logging
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from clickstream_pipeline.core.cli import config_from_args, job_parser, setup_logging
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.core.spark import build_spark, class_archive_option, session_conf
from clickstream_pipeline.ingest import dead_letters
from clickstream_pipeline.ingest.transforms import Rules, validate
from clickstream_pipeline.traffic.generator import encode_event, lab_uniform_events

log = logging.getLogger(__name__)


def _count(batch: DataFrame, _: int) -> None:
    batch.count()


def _workload(spark: SparkSession, folder: Path) -> None:
    """What a local job does first, without services: Spark's rules over lab records, an
    Arrow pass in a Python worker, a Delta table, a streaming query with foreachBatch and its
    checkpoint, and the Kafka and S3A clients' classes."""

    values = [encode_event(e) for e in itertools.islice(lab_uniform_events(1), 2000)]
    records = spark.createDataFrame(
        [(None, v, "t", i % 4, i, datetime.now(UTC)) for i, v in enumerate(values)],
        "key binary, value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    validate(records, Rules()).select("reject_reason").mapInArrow(
        lambda b: b, "reject_reason string"
    ).collect()
    table = str(folder / "dead_letters")
    dead_letters.ensure_table(spark, table)
    letters = dead_letters.rows(
        records.limit(3).selectExpr(
            "'dead' AS kind",
            "key AS raw_key",
            "value AS raw_value",
            "topic",
            "partition",
            "offset",
            "timestamp AS kafka_timestamp",
            "'malformed_json' AS reason",
            "1L AS rows_in",
        ),
        0,
        "warm-up",
    )
    dead_letters.append(table, letters, "warm-up", 0)  # the write path a first batch takes
    spark.read.format("delta").load(table).count()
    # a stream that ends by itself (available-now over one file): stopping one mid-batch
    # would print the interrupted batch's stack trace
    source = folder / "stream-in"
    source.mkdir()
    (source / "0.json").write_text('{"n": 1}\n')
    query = (
        spark.readStream.schema("n long")
        .json(str(source))
        .writeStream.foreachBatch(_count)
        .option("checkpointLocation", str(folder / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    kafka = {"bootstrap.servers": "127.0.0.1:9", "group.id": "class-archive"}
    props = jvm.java.util.Properties()
    for key, value in kafka.items():
        props.setProperty(key, value)
    deserializer = "org.apache.kafka.common.serialization.ByteArrayDeserializer"
    props.setProperty("key.deserializer", deserializer)
    props.setProperty("value.deserializer", deserializer)
    jvm.org.apache.kafka.clients.consumer.KafkaConsumer(props).close()
    jvm.org.apache.kafka.clients.admin.AdminClient.create(props).close()
    # an S3A client is built without a request (no bucket probe)
    path = jvm.org.apache.hadoop.fs.Path("s3a://class-archive/")
    path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).close()


def main(argv: list[str] | None = None) -> int:
    """Train the local session's class archive now (set-up does), unless it exists."""

    args = job_parser("class-archive", main.__doc__ or "").parse_args(argv)
    setup_logging(args.log_level)
    cfg = config_from_args(args)
    secrets = Secrets({}, "none")
    option = class_archive_option(session_conf(cfg, secrets), cfg.spark)
    if option is None or "ArchiveClassesAtExit" not in option:
        where = option.split()[0].split("=", 1)[1] if option else "none (no local master or java)"
        log.info("class archive: %s", where)
        return 0
    spark = build_spark(cfg, secrets)
    with tempfile.TemporaryDirectory(prefix="class-archive-") as tmp:
        _workload(spark, Path(tmp))
    spark.stop()
    log.info("class archive: the JVM writes it as it exits (about 20 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
