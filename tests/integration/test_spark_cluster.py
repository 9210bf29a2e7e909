"""The ingest job on a Spark standalone cluster (`scripts/stack/spark-cluster.sh`: a master and
two one-core workers from pyspark's distribution), submitted with the built wheel and the
resolved jars: exactly once with tasks on both executors, through an executor JVM killed
mid-run (Spark runs its tasks again elsewhere), and through a driver killed and resubmitted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.warehouse.database import ConnectionParams
from tests.conftest import PROJECT_DIR
from tests.integration.ingest_support import (
    assert_exactly_once,
    batch_totals,
    dead_letter_values,
    kill_group,
    ledger_batches,
    new_topic,
    produce_mix,
    wait_until,
)

CLUSTER = PROJECT_DIR / "scripts" / "stack" / "spark-cluster.sh"
MASTER = "spark://127.0.0.1:57077"
SUBMIT = PROJECT_DIR / ".venv" / "bin" / "spark-submit"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    started = subprocess.run([CLUSTER, "start"], capture_output=True, text=True, timeout=240)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield MASTER
    finally:
        subprocess.run([CLUSTER, "stop"], capture_output=True, timeout=180, check=False)


def submit(
    master: str, wheel: Path, topic: str, query_name: str, work: Path, log: Path
) -> subprocess.Popen:
    """`clickstream-ingest --available-now` submitted to the cluster as the README says."""
    jars = ",".join(sorted(str(p) for p in (PROJECT_DIR / ".stack" / "jars").glob("*.jar")))
    events = work / "events"
    events.mkdir(exist_ok=True)
    command = [
        str(SUBMIT),
        "--master",
        master,
        "--py-files",
        str(wheel),
        "--jars",
        jars,
        "--executor-memory",
        "1g",
        "--conf",
        "spark.eventLog.enabled=true",
        "--conf",
        f"spark.eventLog.dir=file://{events}",
        "--conf",
        "spark.eventLog.compress=false",
        "jobs/ingest.py",
        "--env",
        "local",
        "--available-now",
        "--set",
        "kafka.max_offsets_per_trigger=3000",
    ]
    environ = {
        **os.environ,
        "PYSPARK_PYTHON": str(PROJECT_DIR / ".venv" / "bin" / "python"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "CLICKSTREAM__KAFKA__TOPICS": json.dumps([topic]),
        "CLICKSTREAM__INGEST__QUERY_NAME": query_name,
        "CLICKSTREAM__STORAGE__LAKE_ROOT": str(work / "lake"),
    }
    return subprocess.Popen(
        command,
        cwd=PROJECT_DIR,
        env=environ,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def executor_pids() -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", "CoarseGrainedExecutorBackend"], capture_output=True, text=True
    )
    return [int(p) for p in found.stdout.split()]


def events_of(work: Path, kind: str) -> list[dict]:
    return [
        event
        for path in (work / "events").rglob("events_*")  # eventlog_v2_<app>/events_<n>_<app>
        for line in path.read_text(errors="replace").splitlines()
        if line.strip() and (event := json.loads(line))["Event"] == kind
    ]


def check_delivery(db, spark, local_config, sent, query_name, work) -> None:
    assert_exactly_once(db, sent)
    _, read, written, duplicates, dead = batch_totals(db, query_name)
    # a task run again after its executor died, or a batch after its driver did, finds its
    # committed rows in the ledger and counts them as duplicates; each batch still balances
    assert written <= len(sent.valid) <= written + duplicates
    assert dead == len(sent.invalid)
    assert read == written + duplicates + dead >= sent.total
    lake = local_config.storage.model_copy(update={"lake_root": str(work / "lake")})
    cfg = local_config.model_copy(update={"storage": lake})
    letters = sorted(v for v, _ in dead_letter_values(spark, cfg, query_name))
    assert letters == sorted(sent.invalid)


def test_exactly_once_on_two_executors_through_an_executor_killed(
    cluster, wheel, spark, local_config, local_secrets, tmp_path
):
    db = ConnectionParams.from_jdbc_url(local_secrets["database"])  # plain PostgreSQL only
    conf = producer_config(local_config.kafka, local_secrets)
    topic = new_topic(conf, partitions=4)
    sent = produce_mix(conf, topic, 24_000, seed=41, malformed_share=0.02)
    query_name = f"cluster-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "driver.log"
    job = submit(cluster, wheel, topic, query_name, tmp_path, log)
    try:
        wait_until(lambda: len(ledger_batches(db, query_name)) >= 2, 300, job, every=0.2)
        victims = executor_pids()
        assert len(victims) == 2, victims
        os.kill(victims[0], signal.SIGKILL)
        assert job.wait(timeout=400) == 0, log.read_text(errors="replace")[-4000:]
    finally:
        if job.poll() is None:
            kill_group(job)

    check_delivery(db, spark, local_config, sent, query_name, tmp_path)
    tasks = events_of(tmp_path, "SparkListenerTaskEnd")
    executors = {e["Task Info"]["Executor ID"] for e in tasks if not e["Task Info"]["Failed"]}
    assert len(executors) >= 2, executors  # both workers' executors ran tasks
    assert events_of(tmp_path, "SparkListenerExecutorRemoved"), "no executor was lost"


def test_exactly_once_through_a_driver_killed_and_resubmitted(
    cluster, wheel, spark, local_config, local_secrets, tmp_path
):
    db = ConnectionParams.from_jdbc_url(local_secrets["database"])  # plain PostgreSQL only
    conf = producer_config(local_config.kafka, local_secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 9_000, seed=42, malformed_share=0.02)
    query_name = f"cluster-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "driver.log"
    job = submit(cluster, wheel, topic, query_name, tmp_path, log)
    wait_until(lambda: len(ledger_batches(db, query_name)) >= 1, 300, job, every=0.1)
    kill_group(job)  # the driver, its JVM and its Python workers; the executors are released
    time.sleep(2)
    job = submit(cluster, wheel, topic, query_name, tmp_path, log)
    assert job.wait(timeout=400) == 0, log.read_text(errors="replace")[-4000:]
    check_delivery(db, spark, local_config, sent, query_name, tmp_path)
