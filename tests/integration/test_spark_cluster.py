"""The ingest job on a Spark standalone cluster (`scripts/stack/spark-cluster.sh`: a master and
two one-core workers from pyspark's distribution), submitted with the built wheel and the
resolved jars: exactly once with tasks on both executors, through an executor JVM killed
mid-run (Spark runs its tasks again elsewhere) and then the driver killed and resubmitted.
The resubmitted application then runs the dead-letter replay and the smoke job too, on its
executors (one application's start, not three: `one_application.py`)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.db import bootstrap
from devkit.processes import kill_group, log_tail
from devkit.waits import wait_until
from tests.conftest import PROJECT_DIR, TEST_JAVA_OPTIONS
from tests.integration.ingest_support import (
    Sent,
    assert_exactly_once,
    batch_totals,
    dead_letter_values,
    ledger_batches,
    new_topic,
    produce_mix,
)
from tests.integration.one_application import THEN

CLUSTER = PROJECT_DIR / "scripts" / "stack" / "spark-cluster.sh"
MASTER = "spark://127.0.0.1:57077"
MASTER_STATE = "http://127.0.0.1:58091/json/"  # the master web UI's JSON
SUBMIT = PROJECT_DIR / ".venv" / "bin" / "spark-submit"
ONE_APPLICATION = Path(__file__).with_name("one_application.py")  # job scripts in one app


@pytest.fixture(scope="module")
def db(local_secrets) -> ConnectionParams:
    """The plain PostgreSQL database the local config's jobs write to, bootstrapped."""
    params = ConnectionParams.from_jdbc_url(local_secrets["database"])
    bootstrap(params)
    return params


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    started = subprocess.run([CLUSTER, "start"], capture_output=True, text=True, timeout=240)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield MASTER
    finally:
        subprocess.run([CLUSTER, "stop"], capture_output=True, timeout=180, check=False)


def cluster_job(
    master: str,
    wheel: Path,
    job: list[str],
    work: Path,
    log: Path,
    query_name: str,
    output: Path | None = None,
    events: Path | None = None,
    **env: str,
) -> subprocess.Popen:
    """A job script submitted to the cluster as the README says: the wheel and the jars. What
    it prints goes to `output` if given, else to `log` with Spark's log; its event log to
    `events` (default `work/events`)."""
    jars = ",".join(sorted(str(p) for p in (PROJECT_DIR / ".stack" / "jars").glob("*.jar")))
    events = events or work / "events"
    events.mkdir(parents=True, exist_ok=True)
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
        # the tests' JIT options, as their local sessions have them
        "--driver-java-options",
        TEST_JAVA_OPTIONS,
        "--conf",
        f"spark.executor.extraJavaOptions={TEST_JAVA_OPTIONS}",
        "--conf",
        "spark.eventLog.enabled=true",
        "--conf",
        f"spark.eventLog.dir=file://{events}",
        "--conf",
        "spark.eventLog.compress=false",
        *job,
    ]
    environ = {
        **os.environ,
        "PYSPARK_PYTHON": str(PROJECT_DIR / ".venv" / "bin" / "python"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "CLICKSTREAM__INGEST__QUERY_NAME": query_name,
        "CLICKSTREAM__STORAGE__LAKE_ROOT": str(work / "lake"),
        **env,
    }
    return subprocess.Popen(
        command,
        cwd=PROJECT_DIR,
        env=environ,
        stdout=(output or log).open("ab"),
        stderr=log.open("ab"),
        start_new_session=True,
    )


def executor_pids() -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", "CoarseGrainedExecutorBackend"], capture_output=True, text=True
    )
    return [int(p) for p in found.stdout.split()]


def cluster_idle() -> bool:
    """The master runs no application and every worker's cores are free."""
    with urllib.request.urlopen(MASTER_STATE, timeout=5) as response:
        state = json.load(response)
    return not state["activeapps"] and all(w["coresused"] == 0 for w in state["workers"])


def events_of(events: Path, kind: str) -> list[dict]:
    """The events of that kind in the event logs under `events` (one application's or more)."""
    return [
        event
        for path in events.rglob("events_*")  # eventlog_v2_<app>/events_<n>_<app>
        for line in path.read_text(errors="replace").splitlines()
        if line.strip() and (event := json.loads(line))["Event"] == kind
    ]


def lake_config(local_config, work: Path):
    """The local config with the lake (dead letters, checkpoints) where the cluster jobs had it."""
    lake = local_config.storage.model_copy(update={"lake_root": str(work / "lake")})
    return local_config.model_copy(update={"storage": lake})


def check_delivery(db, spark, local_config, sent, query_name, work) -> None:
    assert_exactly_once(db, sent)
    _, read, written, duplicates, dead = batch_totals(db, query_name)
    # a task run again after its executor died, or a batch after its driver did, finds its
    # committed rows in the ledger and counts them as duplicates; each batch still balances
    assert written <= len(sent.valid) <= written + duplicates
    assert dead == len(sent.invalid)
    assert read == written + duplicates + dead >= sent.total
    cfg = lake_config(local_config, work)
    letters = sorted(v for v, _ in dead_letter_values(spark, cfg, query_name))
    assert letters == sorted(sent.invalid)


@dataclass(frozen=True)
class ClusterRun:
    sent: Sent
    query_name: str
    work: Path
    printed: str  # what the resubmitted application's jobs printed (Spark's log apart)
    resubmitted_events: Path  # the resubmitted application's event log


SMOKE_MESSAGES = 800


@pytest.fixture(scope="module")
def cluster_run(cluster, wheel, local_config, local_secrets, db, tmp_path_factory) -> ClusterRun:
    """One run through both failures (one app's start less than a test each), four batches of
    3000 records: an executor's JVM killed in the second (Spark runs its tasks again on the
    other), then the driver killed in the third and the job submitted again. The resubmitted
    application, its ingest done, runs the dead-letter job's replay and then the smoke job:
    each script's own `main` in that driver (`one_application.py`), on its executors, warm."""
    work = tmp_path_factory.mktemp("cluster")
    conf = producer_config(local_config.kafka, local_secrets)
    topic = new_topic(conf, partitions=4)
    sent = produce_mix(conf, topic, 12_000, seed=41, malformed_share=0.02)
    query_name = f"cluster-{uuid.uuid4().hex[:10]}"
    log = work / "driver.log"
    ingest = ["jobs/ingest.py", "--env", "local", "--available-now"]
    ingest += ["--set", "kafka.max_offsets_per_trigger=3000"]  # 3000 records per trigger
    topics = json.dumps([topic])

    def batches_copied(n: int) -> None:
        wait_until(
            lambda: len(ledger_batches(db, query_name)) >= n,
            300,
            f"{n} batches' COPYs",
            process=job,
            log=log,
            every_s=0.1,
        )

    first = work / "events" / "first"
    job = cluster_job(
        cluster,
        wheel,
        ingest,
        work,
        log,
        query_name,
        events=first,
        CLICKSTREAM__KAFKA__TOPICS=topics,
    )
    try:
        batches_copied(2)
        victims = executor_pids()
        assert len(victims) == 2, victims
        os.kill(victims[0], signal.SIGKILL)
        batches_copied(3)
        assert job.poll() is None, "the job ended before its driver could be killed"
    finally:
        # the driver, its JVM and its Python workers; the executors are released
        kill_group(job, missing_ok=True)
    wait_until(cluster_idle, 60, "the master to release the killed driver's executors")

    # the same ingest submitted again; then, in its application, the dead-letter replay (of
    # what the jobs dead-lettered on the executors) and the smoke job
    replay = ["jobs/dead_letters.py", "replay", "--env", "local"]
    smoke = ["jobs/smoke.py", "--env", "local", "--messages", str(SMOKE_MESSAGES)]
    jobs = [str(ONE_APPLICATION), *ingest, THEN, *replay, THEN, *smoke]
    output, resubmitted = work / "resubmitted.out", work / "events" / "resubmitted"
    job = cluster_job(
        cluster,
        wheel,
        jobs,
        work,
        log,
        query_name,
        output,
        resubmitted,
        CLICKSTREAM__KAFKA__TOPICS=topics,
    )
    try:
        code = job.wait(timeout=500)
    finally:
        if job.poll() is None:
            kill_group(job)
    printed = output.read_text(errors="replace")
    assert code == 0, printed + log_tail(log, 4000)
    return ClusterRun(sent, query_name, work, printed, resubmitted)


def test_exactly_once_through_an_executor_killed_then_the_driver_killed_and_resubmitted(
    cluster_run, spark, local_config, db
):
    run = cluster_run
    check_delivery(db, spark, local_config, run.sent, run.query_name, run.work)
    tasks = events_of(run.work / "events", "SparkListenerTaskEnd")
    executors = {e["Task Info"]["Executor ID"] for e in tasks if not e["Task Info"]["Failed"]}
    assert len(executors) >= 2, executors  # both workers' executors ran tasks
    assert events_of(run.work / "events", "SparkListenerExecutorRemoved"), "no executor was lost"


def test_the_dead_letter_replay_on_the_cluster_writes_none_of_the_still_invalid(cluster_run):
    # the dead-letter job in the resubmitted application: a replay re-validates what the jobs
    # dead-lettered on the executors, and writes none (they are still invalid)
    n = len(cluster_run.sent.invalid)
    replayed = f"replayed {n}: written 0, already written 0, still dead {n} "
    assert replayed in cluster_run.printed, cluster_run.printed


def test_the_smoke_job_on_the_cluster(cluster_run):
    printed, n = cluster_run.printed, SMOKE_MESSAGES
    # the job's own check: as many rows in events as messages sent, from as many distinct offsets
    found = re.search(
        rf"smoke (\w+): sent {n} messages .*; {n} rows of it in events \({n} distinct", printed
    )
    assert found, printed
    # its query's tasks ran on the cluster's executors (its jobs are described by its name)
    events = cluster_run.resubmitted_events
    stages = {
        stage
        for job in events_of(events, "SparkListenerJobStart")
        if job["Properties"].get("spark.job.description", "").startswith(f"smoke-{found[1]}\n")
        for stage in job["Stage IDs"]
    }
    assert stages, "no job of the smoke query"
    tasks = [e for e in events_of(events, "SparkListenerTaskEnd") if e["Stage ID"] in stages]
    assert tasks and {e["Task Info"]["Executor ID"] for e in tasks} - {"driver"}, tasks
