"""The real ingest job killed with SIGKILL, and PostgreSQL restarted under it: no loss, no dups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clickstream_pipeline.database import ConnectionParams
from clickstream_pipeline.source import producer_config
from tests.conftest import PROJECT_DIR
from tests.integration.db import query
from tests.integration.ingest_support import (
    assert_exactly_once,
    new_topic,
    produce_mix,
    stored_events,
)

JOB = [sys.executable, "-m", "clickstream_pipeline.jobs.ingest", "--env", "local"]


@pytest.fixture(scope="module")
def db(local_secrets) -> ConnectionParams:
    return ConnectionParams.from_jdbc_url(local_secrets["database"])


def start_job(topic: str, log: Path, *extra: str) -> subprocess.Popen:
    args = [
        *JOB,
        "--set",
        f'kafka.topics=["{topic}"]',
        "--set",
        f"ingest.query_name=q-{topic}",
        *extra,
    ]
    return subprocess.Popen(
        args,
        cwd=PROJECT_DIR,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and everything it started (JVM, Python workers): a crash."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def wait_until(
    condition, timeout: float, proc: subprocess.Popen | None = None, every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the job exited early with {proc.returncode}")
        time.sleep(every)
    raise AssertionError("timed out")


def ledger_batches(db: ConnectionParams, sink: str) -> set[int]:
    return {
        b
        for (b,) in query(
            db, "SELECT DISTINCT batch_id FROM clickstream_ingest_ledger WHERE sink = %s", (sink,)
        )
    }


def test_sigkill_at_several_points_then_restart(local_config, local_secrets, db, tmp_path):
    conf = producer_config(local_config.kafka, local_secrets)
    topic = new_topic(conf, partitions=3)
    sent = produce_mix(conf, topic, 9_000, seed=21)
    sink = f"q-{topic}"
    log = tmp_path / "ingest.log"
    per_trigger = ("--set", "kafka.max_offsets_per_trigger=1500", "--available-now")

    # 1: right after batch 1's first COPY committed, before Spark commits the batch
    job = start_job(topic, log, *per_trigger)
    wait_until(lambda: 1 in ledger_batches(db, sink), 180, job)
    kill_group(job)
    # 2: at some moment of the next run, while batches flow
    job = start_job(topic, log, *per_trigger)
    first = max(ledger_batches(db, sink))
    wait_until(lambda: max(ledger_batches(db, sink)) >= first + 2, 180, job)
    time.sleep(0.7)
    kill_group(job)
    # 3: let it finish
    job = start_job(topic, log, *per_trigger)
    assert job.wait(timeout=300) == 0, log.read_text()[-3000:]

    assert_exactly_once(db, sent)
    (replayed,) = query(
        db,
        "SELECT count(*) FROM clickstream_ingest_batches "
        "WHERE query_name = %s AND rows_duplicate > 0",
        (sink,),
    )
    assert replayed[0] >= 1, "no batch was replayed after a kill between DB and checkpoint"


def test_postgres_restart_while_the_stream_runs(local_config, local_secrets, db, tmp_path):
    conf = producer_config(local_config.kafka, local_secrets)
    topic = new_topic(conf, partitions=2)
    log = tmp_path / "ingest.log"
    job = start_job(topic, log, "--set", "ingest.trigger_interval=1 second")
    try:
        first = produce_mix(conf, topic, 3_000, seed=31)
        wait_until(lambda: len(stored_events(db, topic)) >= len(first.valid) // 2, 180, job)
        postgres = PROJECT_DIR / "scripts" / "stack" / "postgres.sh"
        subprocess.run([str(postgres), "stop"], check=True, timeout=60)
        # these arrive while the database is down
        second = produce_mix(conf, topic, 3_000, seed=32, first_id=10**6)
        time.sleep(3)
        subprocess.run([str(postgres), "start"], check=True, timeout=60)
        first.valid.update(second.valid)
        first.invalid += second.invalid
        wait_until(lambda: len(stored_events(db, topic)) >= len(first.valid), 180, job, every=0.5)
        assert job.poll() is None, "the job died with the database"
    finally:
        kill_group(job)
    assert_exactly_once(db, first)
