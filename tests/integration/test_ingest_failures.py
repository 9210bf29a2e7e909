"""The real ingest job killed with SIGKILL, the database restarted under it (on Citus, a
worker node, which Citus's two-phase-commit recovery must bring back in step), the database
refusing every connection for a while, and the Kafka broker and the object store stopped and
restarted under it: no loss, no dups. The checkpoint and dead letters outlive the store."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.warehouse.database import ConnectionParams, connect
from devkit.db import query
from devkit.processes import kill_group, log_tail
from devkit.waits import wait_until
from tests.conftest import PROJECT_DIR
from tests.integration.ingest_support import (
    Sent,
    assert_exactly_once,
    batch_totals,
    dead_letter_values,
    ledger_batches,
    new_topic,
    produce_mix,
    start_job,
    stored_events,
)

STACK = PROJECT_DIR / "scripts" / "stack"
# one broker and one object store serve both tiers: their outages run on plain PostgreSQL
ONE_TIER = pytest.mark.parametrize("tier", ["postgres"], indirect=True)


@pytest.mark.independent  # its two tiers may run side by side
def test_sigkill_at_several_points_then_restart(tier, db, tmp_path):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=3)
    sent = produce_mix(conf, topic, 9_000, seed=21)
    sink = f"q-{topic}"
    log = tmp_path / "ingest.log"
    per_trigger = ("--set", "kafka.max_offsets_per_trigger=1500", "--available-now")

    # 1: right after batch 1's first COPY committed, before Spark commits the batch
    job = start_job(tier.env, topic, log, *per_trigger)
    wait_until(lambda: 1 in ledger_batches(db, sink), 180, "batch 1's COPY", process=job, log=log)
    kill_group(job)
    # 2: in the next run, right after a batch's record (the driver's last write before Spark
    # commits the batch), two batches on
    job = start_job(tier.env, topic, log, *per_trigger)
    first = max(ledger_batches(db, sink))
    wait_until(
        lambda: first + 2 in recorded_batches(db, sink),
        180,
        f"batch {first + 2}'s record",
        process=job,
        log=log,
    )
    kill_group(job)
    # 3: let it finish
    job = start_job(tier.env, topic, log, *per_trigger)
    assert job.wait(timeout=300) == 0, log.read_text()[-3000:]

    assert_exactly_once(db, sent)
    (replayed,) = query(
        db,
        "SELECT count(*) FROM clickstream_ingest_batches "
        "WHERE query_name = %s AND rows_duplicate > 0",
        (sink,),
    )
    assert replayed[0] >= 1, "no batch was replayed after a kill between DB and checkpoint"


@pytest.mark.outage
def test_database_restart_while_the_stream_runs(tier, db, tmp_path):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    log = tmp_path / "ingest.log"
    job = start_job(tier.env, topic, log, "--set", "ingest.trigger_interval=1 second")
    try:
        first = produce_mix(conf, topic, 3_000, seed=31)
        wait_until(
            lambda: len(stored_events(db, topic)) >= len(first.valid) // 2,
            180,
            "half the first lot in events",
            process=job,
            log=log,
        )
        # plain PostgreSQL: the server; Citus: one worker, holding half of every table's shards
        stop = (
            [str(STACK / "citus.sh"), "stop", "worker1"]
            if tier.citus
            else [
                str(STACK / "postgres.sh"),
                "stop",
            ]
        )
        subprocess.run(stop, check=True, timeout=60)
        # these arrive while the database is down
        second = produce_mix(conf, topic, 3_000, seed=32, first_id=10**6)
        time.sleep(3)
        subprocess.run([stop[0], "start"], check=True, timeout=60)
        first.add(second)
        wait_until(
            lambda: len(stored_events(db, topic)) >= len(first.valid),
            180,
            "both lots in events",
            process=job,
            log=log,
            every_s=0.5,
        )
        assert job.poll() is None, "the job died with the database"
    finally:
        kill_group(job)
    assert_exactly_once(db, first)


@pytest.mark.outage(shared=True)
@ONE_TIER
def test_a_restart_from_the_checkpoint_then_broker_and_object_store_outages(
    tier, db, spark, tmp_path
):
    """One topic through an available-now run, an object store restart, then a running job:
    it starts from the checkpoint the store kept, rides out the broker's outage (the next lot
    sent after it) and the store's (a lot sent while the checkpoint and the dead letters cannot
    be written), and the dead letters of all of it are there, each once."""
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    log = tmp_path / "ingest.log"
    sent = produce_mix(conf, topic, 2_000, seed=61, malformed_share=0.05)
    job = start_job(tier.env, topic, log, "--available-now")
    assert job.wait(timeout=300) == 0, log_tail(log)
    with service_stopped("objectstore.sh", 120):
        pass  # a restart
    sent = ride_out(
        tier,
        db,
        log,
        topic,
        sent,
        (service_stopped("kafka.sh", 180), False),
        (service_stopped("objectstore.sh", 120), True),
    )
    letters = dead_letter_values(spark, tier.config, f"q-{topic}")
    assert sorted(value for value, _ in letters) == sorted(sent.invalid)


@pytest.mark.outage
def test_database_refusing_connections_while_the_stream_runs(tier, db, tmp_path):
    # "too many clients already" for every connection the job opens
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    log = tmp_path / "ingest.log"
    ride_out(tier, db, log, topic, None, (every_connection_slot_taken(db), True))
    assert "transient database error" in log.read_text(errors="replace"), "never refused"


Outage = tuple[contextlib.AbstractContextManager, bool]  # the outage, a lot sent during it


def ride_out(
    tier,
    db: ConnectionParams,
    log: Path,
    topic: str,
    before: Sent | None,
    *outages: Outage,
    hold_s: float = 8,
) -> Sent:
    """A running job (1 s triggers) on `topic` (`before`: what an earlier run read of it)
    through each outage in turn, each held `hold_s` seconds once the lot before it is in, with
    3,000 records a lot: it stays up, and every record lands once, counted. Returns every
    record sent to the topic."""
    conf = producer_config(tier.config.kafka, tier.secrets)
    sink = f"q-{topic}"
    job = start_job(tier.env, topic, log, "--set", "ingest.trigger_interval=1 second")

    def lot(number: int) -> Sent:
        return produce_mix(conf, topic, 3_000, seed=number, first_id=number * 10**6)

    def all_read(what: str) -> None:
        # a batch's record is the last thing it writes
        wait_until(
            lambda: batch_totals(db, sink)[1] >= sent.total,
            240,
            what,
            process=job,
            log=log,
            every_s=0.5,
        )

    try:
        sent = lot(1)
        if before is not None:
            sent.add(before)
        all_read("the first lot read")
        # it began where the earlier run's checkpoint ended: nothing read twice
        assert batch_totals(db, sink)[3] == 0, "read again what the earlier run had read"
        for number, (outage, send_during) in enumerate(outages, start=2):
            with outage:
                during = lot(number) if send_during else None
                time.sleep(hold_s)
                assert job.poll() is None, f"the job died in the outage:\n{log_tail(log)}"
            sent.add(during or lot(number))
            all_read(f"lot {number} read")
        assert job.poll() is None, f"the job died after the outage:\n{log_tail(log)}"
    finally:
        kill_group(job)
    assert_exactly_once(db, sent)
    _, read, written, duplicate, dead = batch_totals(db, sink)
    assert (written, dead) == (len(sent.valid), len(sent.invalid))
    assert read == sent.total + duplicate
    return sent


def recorded_batches(db: ConnectionParams, query_name: str) -> set[int]:
    """The batches the job has recorded in clickstream_ingest_batches."""
    rows = query(
        db, "SELECT batch_id FROM clickstream_ingest_batches WHERE query_name = %s", (query_name,)
    )
    return {batch_id for (batch_id,) in rows}


@contextlib.contextmanager
def service_stopped(script: str, start_timeout_s: float) -> Iterator[None]:
    """One of the stack's services stopped, then started again."""
    subprocess.run([str(STACK / script), "stop"], check=True, timeout=90)
    try:
        yield
    finally:
        subprocess.run([str(STACK / script), "start"], check=True, timeout=start_timeout_s)


@contextlib.contextmanager
def every_connection_slot_taken(db: ConnectionParams) -> Iterator[None]:
    """End the job's sessions, as a restart would (it keeps its connections between batches),
    hold every connection the server allows (superuser slots too), then let them go."""
    held: list = []

    def take_every_slot() -> None:
        for _ in range(1000):
            try:
                held.append(connect(db, "test-slot-holder"))
            except ConnectionError as exc:  # the builtin, raised by database.connect
                assert "too many clients" in str(exc) or "reserved" in str(exc), exc
                return
        raise AssertionError("the server accepted 1000 connections")

    try:
        take_every_slot()
        with held[0].cursor() as cur:
            cur.execute(
                """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                   WHERE application_name = 'clickstream-pipeline'"""
            )
            assert cur.fetchone()[0] > 0, "the job kept no connection"
        take_every_slot()  # the slots its sessions held
        yield
    finally:
        for conn in held:
            conn.close()
