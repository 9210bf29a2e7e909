"""A class-data-sharing archive of a local driver JVM's classes (JDK 13+ dynamic CDS).

A local session loads tens of thousands of classes from Spark's and the connectors' jars.
Mapping them from an archive instead of reading and verifying them saves about 2.5 s of session
start and 2.5 s of a query's start and first batch here (`benchmarks/startup.py`). Set-up trains
one (`python -m clickstream_pipeline.class_archive`, a local workload); otherwise the first
session without an archive writes one when its JVM exits (`-XX:ArchiveClassesAtExit`, to a file
of its own, while other sessions run without). A later session promotes it and maps it
(`-XX:SharedArchiveFile`). The archive's
name carries a digest of the class path (each jar's path, size and mtime) and of the java binary,
so a new jar or JDK trains a new one. A JVM that cannot use an archive runs without it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

PART = ".part-"


def java_binary() -> str | None:
    """The java PySpark launches: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    return str(Path(found).resolve()) if found and Path(found).exists() else None


def archive_name(class_path: list[str], java: str) -> str:
    digest = hashlib.sha256()
    for item in [java, *class_path]:
        stat = Path(item).stat()
        digest.update(f"{item}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return f"classes-{digest.hexdigest()[:20]}.jsa"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer_pid(path: Path) -> int | None:
    """The pid of the process whose JVM writes `path` (a training file), else None."""
    _, sep, pid = path.name.partition(PART)
    return int(pid) if sep and pid.isdigit() else None


def _tidy(folder: Path, archive: Path) -> bool:
    """Promote a finished training file of `archive`, delete every other finished file; true
    while another process trains `archive`."""
    training = False
    for path in sorted(folder.glob("classes-*.jsa*")):
        pid = _writer_pid(path)
        if path == archive or (pid is not None and _alive(pid)):
            training |= path != archive and path.name.startswith(archive.name)
            continue  # in use, or its JVM may still be writing it
        if path.name.startswith(archive.name) and not archive.exists() and path.stat().st_size:
            os.replace(path, archive)
        else:
            path.unlink(missing_ok=True)
    return training


def java_option(folder: Path, class_path: list[str]) -> str | None:
    """The JVM options that map this class path's archive, or train one at exit; None when
    there is no java, the folder cannot be written, or another process is training it."""
    java = java_binary()
    if java is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        archive = folder / archive_name(class_path, java)
        training = _tidy(folder, archive)
    except OSError:
        return None
    if training and not archive.exists():
        return None
    quiet = "-Xlog:cds*=error"  # not the classes it skips (signed jars, old bytecode)
    if archive.exists():
        return f"-XX:SharedArchiveFile={archive} {quiet}"
    return f"-XX:ArchiveClassesAtExit={archive}{PART}{os.getpid()} {quiet}"


def _count(batch: DataFrame, _: int) -> None:
    batch.count()


def _workload(spark: SparkSession, folder: Path) -> None:
    """What a local job does first, without services: Spark's rules over lab records, an
    Arrow pass in a Python worker, a Delta table, a streaming query with foreachBatch and its
    checkpoint, and the Kafka and S3A clients' classes."""
    from clickstream_pipeline import dead_letters
    from clickstream_pipeline.generator import encode_event, lab_uniform_events
    from clickstream_pipeline.transforms import Rules, validate

    values = [encode_event(e) for e in itertools.islice(lab_uniform_events(1), 2000)]
    records = spark.createDataFrame(
        [(None, v, "t", i % 4, i, datetime.now(UTC)) for i, v in enumerate(values)],
        "key binary, value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    validate(records, Rules()).select("reject_reason").mapInArrow(
        lambda b: b, "reject_reason string"
    ).collect()
    dead_letters.ensure_table(spark, str(folder / "dead_letters"))
    spark.read.format("delta").load(str(folder / "dead_letters")).count()
    query = (
        spark.readStream.format("rate")
        .load()
        .writeStream.foreachBatch(_count)
        .option("checkpointLocation", str(folder / "checkpoint"))
        .start()
    )
    while not query.recentProgress:
        time.sleep(0.2)
    query.stop()
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
    from clickstream_pipeline.cli import config_from_args, job_parser, setup_logging
    from clickstream_pipeline.secrets import Secrets
    from clickstream_pipeline.spark import build_spark, class_archive_option, session_conf

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
