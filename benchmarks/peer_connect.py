"""A real peer in the same run: Kafka Connect with Debezium's JDBC sink against the ingest job.

The peer is what a user would wire by hand instead of this project: a Connect worker of the
broker's own release (4.1.1, standalone) with `io.debezium:debezium-connector-jdbc` 3.5.0.Final,
the newest release Maven Central serves here with all its dependencies (3.6.x needs a
`debezium-sink` that is not served; Confluent's and Aiven's JDBC sinks are not served at all).
Both read the same N rows of the lab (`lab_uniform_events(1)`), each in the shape it needs:
the lab's plain JSON for ours, JSON with an inline schema for Connect's `JsonConverter`. Each
writes a table with the columns of `events`: ours `events`, the peer `peer_events` (plus a
`written_at` column, `clock_timestamp()` at insert). Connect's `InsertField` transform adds the
Kafka topic, partition and offset, so both are counted the same way.

Figures, both measured in this run:
- end to end: rows/s from the start of the process to the last row in the table (each from an
  empty checkpoint or consumer group), the database's CPU per row, peak memory of each
  process tree (ours: the job's Python, its JVM and Python workers; the peer: its JVM);
- a SIGKILL of each pipeline half-way through, then a restart: rows lost and rows duplicated
  (by Kafka partition and offset). The peer is at-least-once by design, so its duplicates are
  counted, not tuned away;
- freshness at 2,000 msg/s (`--rate`, `--duration` 60 s), each pipeline running alone after a
  warm-up: per row, from its send to its insert (ours `ingested_at`, the COPY's transaction
  start; the peer `written_at`), p50 and p95.
Progress is read from bookkeeping (our batch records, the server's insert counts), never by
counting the table being written: a `count(*)` poll cost more database CPU than the writes.
The peer is tuned as Debezium's documentation recommends for throughput: `batch.size` with the
consumer's `max.poll.records` as large, one task per partition, and the PostgreSQL driver's
`reWriteBatchedInserts`. The settings are printed.

Run: `.venv/bin/python -m benchmarks.peer_connect [--messages 2000000] [--quick]`.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from benchmarks.common import (
    SECRET_KEYS,
    DbCpuMeter,
    PeakMemory,
    benchmark_parser,
    db_params,
    finish,
    machine_facts,
    percentile,
    say,
    scratch_database,
    secrets_for,
    setup_env,
)
from benchmarks.end_to_end import load_topic
from benchmarks.ingest_support import fresh_topic
from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.fields import ID_FIELDS, LAB_FIELDS
from clickstream_pipeline.core.secrets import Secrets, env_variable_name
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.traffic.generator import Event, encode_event, storefront_events
from clickstream_pipeline.traffic.producer import SendOptions, kafka_settings
from clickstream_pipeline.warehouse.database import ConnectionParams, fetch
from devkit.db import execute
from devkit.ports import free_port
from devkit.processes import kill_group, log_tail

ROOT = Path(__file__).resolve().parents[1]
CONNECT_JARS = ROOT / ".stack" / "connect" / "jars"
PEER_TABLE = "peer_events"
CONNECTOR_CLASS = "io.debezium.connector.jdbc.JdbcSinkConnector"
PASSWORD_VARIABLE = "CLICKSTREAM_PEER_DB_PASSWORD"
STALLED_S = 180  # no new row for this long (a JVM's start included): the run is stuck

# the lab's six fields as a Connect schema, inlined in every message (JsonConverter's envelope)
LAB_SCHEMA = {
    "type": "struct",
    "name": "clickstream.lab_event",
    "optional": False,
    "fields": [
        {"field": f, "type": "int64" if f in ID_FIELDS else "string", "optional": False}
        for f in LAB_FIELDS
    ],
}
_ENVELOPE = b'{"schema":' + json.dumps(LAB_SCHEMA, separators=(",", ":")).encode() + b',"payload":'


def encode_with_schema(event: Event) -> bytes:
    """The same row as `encode_event`, wrapped with its schema for Connect's JsonConverter."""
    return _ENVELOPE + encode_event(event) + b"}"


@dataclass
class Delivery:
    """What a pipeline left in its table for one topic, by Kafka partition and offset."""

    rows: int
    distinct: int
    expected: int

    @property
    def lost(self) -> int:
        return self.expected - self.distinct

    @property
    def duplicated(self) -> int:
        return self.rows - self.distinct


def delivery(db: ConnectionParams, table: str, topic: str, expected: int) -> Delivery:
    ((rows, distinct),) = fetch(
        db,
        f"""SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset))
            FROM {table} WHERE kafka_topic = %s""",  # noqa: S608 (one of two constants)
        (topic,),
    )
    return Delivery(int(rows), int(distinct), expected)


@dataclass
class Pipeline:
    """One of the two, as the benchmark drives it: how to start it, how many rows it has
    written so far (cheap: read every 0.5 s without touching the table it writes), and when its
    first and last rows were written (exact, on one clock, read once at the end).

    Progress polls must not scan the table being written: a `count(*)` every 0.2 s took more of
    the database's CPU than the COPY itself in the first version of this benchmark."""

    name: str
    table: str
    topic: str
    db: ConnectionParams
    start: Callable[[], subprocess.Popen]
    progress: Callable[[], int]
    write_span: Callable[[], tuple[float, float]]  # first and last write, Unix time
    stops_by_itself: bool  # ours with --available-now; the peer runs until killed
    log_tail: Callable[[], str]  # the end of its log, for an error


def _epochs(db: ConnectionParams, text: str, args: tuple[Any, ...]) -> tuple[float, float]:
    first, last = fetch(db, text, args)[0]
    return float(first), float(last)


def ours_pipeline(
    db: ConnectionParams, job: OurJob, topic: str, available_now: bool = True
) -> Pipeline:
    """Progress: rows in `events` by the query's recorded batches (its own bookkeeping). A
    batch replayed after a kill records the rows its first attempt wrote as duplicates, and
    its record replaces the first attempt's, so written + duplicates is what it holds."""
    query_name = f"peer-ours-{uuid.uuid4().hex[:8]}"
    written = """SELECT coalesce(sum(rows_written + rows_duplicate), 0)
                 FROM clickstream_ingest_batches WHERE query_name = %s"""
    # the driver's clock once every task of the batch committed (an upper bound)
    span = """SELECT extract(epoch FROM min(committed_at)), extract(epoch FROM max(committed_at))
              FROM clickstream_ingest_batches WHERE query_name = %s AND rows_written > 0"""
    return Pipeline(
        "ours",
        "events",
        topic,
        db,
        lambda: job.start(query_name, available_now, topic),
        lambda: int(fetch(db, written, (query_name,))[0][0]),
        lambda: _epochs(db, span, (query_name,)),
        available_now,
        job.log_tail,
    )


def peer_pipeline(db: ConnectionParams, worker: ConnectWorker, topic: str) -> Pipeline:
    """Progress: rows inserted into `peer_events` since this pipeline was made (the server's
    statistics, a re-sent row counted again)."""
    inserted = "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'peer_events'"
    base = int(fetch(db, inserted)[0][0])
    span = """SELECT extract(epoch FROM min(written_at)), extract(epoch FROM max(written_at))
              FROM peer_events WHERE kafka_topic = %s"""
    return Pipeline(
        "peer",
        PEER_TABLE,
        topic,
        db,
        worker.start,
        lambda: int(fetch(db, inserted)[0][0]) - base,
        lambda: _epochs(db, span, (topic,)),
        False,
        worker.log_tail,
    )


def wait_rows(
    pipeline: Pipeline,
    at_least: int,
    process: subprocess.Popen,
    what: str,
    timeout_s: float,
    done: Callable[[], bool] | None = None,
    stalled_s: float = STALLED_S,
) -> float:
    """Poll until the pipeline wrote `at_least` rows (and `done()`, if given), printing the
    rate every 5 s; returns when (monotonic). Fails, with the end of the pipeline's log, after
    `timeout_s` or once no row came for `stalled_s`."""
    started = time.monotonic()
    last_print = last_check = last_move = started
    moved = -1
    while True:
        n = pipeline.progress()
        now = time.monotonic()
        if n != moved:
            moved, last_move = n, now
        if n >= at_least:
            if done is None:
                return now
            if now - last_check >= 5:  # `done` scans the table: every 5 s at most
                last_check = now
                if done():
                    return now
        if process.poll() is not None and process.returncode != 0:
            raise RuntimeError(f"{what} exited with {process.returncode} at {n:,} rows")
        if now - started > timeout_s or now - last_move > stalled_s:
            raise RuntimeError(
                f"{what}: {n:,} of {at_least:,} rows after {now - started:.0f}s, the last "
                f"{now - last_move:.0f}s without one; its log ends:\n{pipeline.log_tail()}"
            )
        if now - last_print >= 5:
            say(f"{what}: {n:,}/{at_least:,} rows ({n / (now - started):,.0f} rows/s)")
            last_print = now
        time.sleep(0.5)


@dataclass
class ConnectWorker:
    """A standalone Connect worker running Debezium's JDBC sink from `topic` into `peer_events`."""

    work: Path
    bootstrap_servers: str
    topic: str
    db: ConnectionParams
    tasks: int
    batch_size: int
    name: str = field(default_factory=lambda: f"peer-{uuid.uuid4().hex[:8]}")
    port: int = field(default_factory=free_port)

    def connector_settings(self) -> dict[str, str]:
        url = self.db.jdbc_url()
        url += ("&" if "?" in url else "?") + "reWriteBatchedInserts=true"
        settings = {
            "name": self.name,
            "connector.class": CONNECTOR_CLASS,
            "tasks.max": str(self.tasks),
            "topics": self.topic,
            "connection.url": url,
            "connection.username": self.db.user or "",
            "insert.mode": "insert",
            "primary.key.mode": "none",
            "schema.evolution": "none",
            "collection.name.format": PEER_TABLE,
            "batch.size": str(self.batch_size),
            "transforms": "kafka",
            "transforms.kafka.type": "org.apache.kafka.connect.transforms.InsertField$Value",
            "transforms.kafka.topic.field": "kafka_topic",
            "transforms.kafka.partition.field": "kafka_partition",
            "transforms.kafka.offset.field": "kafka_offset",
            "transforms.kafka.timestamp.field": "kafka_timestamp",
        }
        if self.db.password is not None:  # read by Connect from its environment, never a file
            settings["connection.password"] = f"${{env:{PASSWORD_VARIABLE}}}"
        return settings

    def worker_settings(self) -> dict[str, str]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "true",
            "offset.storage.file.filename": str(self.work / "connect.offsets"),
            "listeners": f"http://127.0.0.1:{self.port}",
            "config.providers": "env",
            "config.providers.env.class": (
                "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
            ),
            "consumer.max.poll.records": str(self.batch_size),
            "consumer.auto.offset.reset": "earliest",
        }

    def start(self) -> subprocess.Popen:
        if not any(CONNECT_JARS.glob("connect-runtime-*.jar")):
            raise RuntimeError(
                f"no Connect jars in {CONNECT_JARS}: run scripts/stack/connect.sh jars"
            )
        self.work.mkdir(parents=True, exist_ok=True)
        worker, connector = self.work / "worker.properties", self.work / "connector.properties"
        worker.write_text(_properties(self.worker_settings()))
        connector.write_text(_properties(self.connector_settings()))
        logging = self.work / "log4j2.properties"
        logging.write_text(LOG4J2)
        env = {**os.environ}
        if self.db.password is not None:
            env[PASSWORD_VARIABLE] = self.db.password.get_secret_value()
        command = [
            "java",
            "-Xms256m",
            "-Xmx1g",
            f"-Dlog4j2.configurationFile={logging}",
            "-cp",
            f"{CONNECT_JARS}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone",
            str(worker),
            str(connector),
        ]
        log = (self.work / "connect.log").open("ab")
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_running(process)
        return process

    def _wait_running(self, process: subprocess.Popen, timeout_s: float = 120) -> None:
        url = f"http://127.0.0.1:{self.port}/connectors/{self.name}/status"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"Connect exited with {process.returncode}: {self.log_tail()}")
            try:
                status = json.loads(urllib.request.urlopen(url, timeout=2).read())
            except OSError:
                time.sleep(0.3)
                continue
            states = [t["state"] for t in status.get("tasks", [])]
            failed = [
                t.get("trace", "")[:2000] for t in status.get("tasks", []) if t["state"] == "FAILED"
            ]
            if failed:
                raise RuntimeError(f"the peer's task failed: {failed[0]}")
            if len(states) == self.tasks and set(states) == {"RUNNING"}:
                return
            time.sleep(0.3)
        raise RuntimeError(f"Connect not running after {timeout_s:.0f}s: {self.log_tail()}")

    def log_tail(self) -> str:
        return log_tail(self.work / "connect.log")


LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = %d{HH:mm:ss.SSS} %-5p %c{1}: %m%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.connect.name = org.apache.kafka.connect.runtime.WorkerSinkTask
logger.connect.level = info
"""


def _properties(settings: dict[str, str]) -> str:
    return "".join(f"{k}={v.replace(chr(92), chr(92) * 2)}\n" for k, v in settings.items())


@dataclass
class OurJob:
    """The ingest job (`clickstream-ingest --available-now`) in a process of its own."""

    cfg: Config
    secrets: Secrets
    topic: str
    work: Path
    max_offsets_per_trigger: int

    def start(
        self, query_name: str, available_now: bool = True, topic: str | None = None
    ) -> subprocess.Popen:
        env = {**os.environ}
        for key in SECRET_KEYS:  # the scratch database's URL with the stack's others
            if (value := self.secrets.get(key)) is not None:
                env[env_variable_name(self.cfg.secrets.name_of(key))] = value.get_secret_value()
        command = [
            sys.executable,
            "-m",
            "clickstream_pipeline.jobs.ingest",
            *("--env", self.cfg.env),
            *(["--available-now"] if available_now else []),
            *("--set", "secrets.backend=env"),
            *("--set", f'kafka.topics=["{topic or self.topic}"]'),
            *("--set", f"ingest.query_name={query_name}"),
        ]
        if available_now:  # a running query keeps the config's (no cap by default)
            command += ["--set", f"kafka.max_offsets_per_trigger={self.max_offsets_per_trigger}"]
        log = (self.work / "ingest.log").open("ab")
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log_tail(self) -> str:
        return log_tail(self.work / "ingest.log")


def throughput(pipeline: Pipeline, n: int) -> dict[str, Any]:
    """From the process's start to its last of `n` rows: rows/s, DB CPU per row, peak memory."""
    what = pipeline.name
    process = None
    try:
        with DbCpuMeter(pipeline.db) as meter:  # up to the last row: no check of the table in it
            started_at = time.time()
            process = pipeline.start()
            with PeakMemory(process.pid) as memory:
                wait_rows(pipeline, n, process, what, timeout_s=3600)
        wait_rows(pipeline, n, process, what, 600, lambda: _complete(pipeline, n))
        if pipeline.stops_by_itself:
            process.wait(timeout=600)
    finally:
        if process is not None:
            kill_group(process, missing_ok=True)
    got = delivery(pipeline.db, pipeline.table, pipeline.topic, n)
    if got.rows != n or got.lost:
        raise RuntimeError(f"{what} wrote {got.rows:,} rows ({got.lost:,} lost), expected {n:,}")
    first_at, last_at = pipeline.write_span()
    seconds, to_first = last_at - started_at, first_at - started_at
    figures = {
        "rows": n,
        "seconds": round(seconds, 3),
        "rows_per_s": n / seconds,
        # the first row's batch or insert, on the clock of the last (a poll's lag made the
        # first row look later than the last when one batch wrote them all)
        "start_to_first_row_s": round(to_first, 3),
        # none when one batch wrote every row
        "rows_per_s_after_first_row": n / (seconds - to_first) if seconds > to_first else None,
        "db_cpu_us_per_row": meter.reading.total_s / n * 1e6,
        "peak_memory_mib": round(memory.tree_peak_mib, 1),
    }
    after = figures["rows_per_s_after_first_row"]
    say(
        f"{what}: {n:,} rows in {seconds:.1f}s = {figures['rows_per_s']:,.0f} rows/s "
        f"({figures['start_to_first_row_s']:.1f}s to the first row, "
        f"{f'then {after:,.0f} rows/s' if after else 'all written together'}); "
        f"database CPU {figures['db_cpu_us_per_row']:.1f} us/row; peak memory "
        f"{figures['peak_memory_mib']:,.0f} MiB"
    )
    return figures


def _complete(pipeline: Pipeline, n: int) -> bool:
    """Every one of the `n` records in the table (one scan: asked only once progress says so)."""
    return delivery(pipeline.db, pipeline.table, pipeline.topic, n).lost == 0


def killed_half_way(pipeline: Pipeline, n: int) -> dict[str, int]:
    """SIGKILL at half the rows, start again, let it finish: rows lost and duplicated."""
    what = pipeline.name
    process = pipeline.start()
    wait_rows(pipeline, n // 2, process, f"{what} (to be killed)", timeout_s=3600)
    kill_group(process, missing_ok=True)
    at_kill = pipeline.progress()
    say(f"{what}: SIGKILL at {at_kill:,} rows; starting again")
    process = pipeline.start()

    try:
        wait_rows(pipeline, n, process, f"{what} (restarted)", 3600, lambda: _complete(pipeline, n))
        if pipeline.stops_by_itself:
            process.wait(timeout=600)
        else:  # a restarted peer may still re-send what it had written: let it finish
            settled, since = pipeline.progress(), time.monotonic()
            while time.monotonic() - since < 5:
                time.sleep(0.5)
                if (now := pipeline.progress()) != settled:
                    settled, since = now, time.monotonic()
    finally:
        kill_group(process, missing_ok=True)
    got = delivery(pipeline.db, pipeline.table, pipeline.topic, n)
    say(f"{what}: after the kill {got.lost:,} rows lost, {got.duplicated:,} duplicated")
    return {"killed_at_rows": at_kill, "lost": got.lost, "duplicated": got.duplicated}


def produce_paced(
    cfg: Config,
    secrets: Secrets,
    topic: str,
    encode: Callable[[Event], bytes],
    rate: float,
    seconds: float,
) -> int:
    """Storefront events to `topic` at `rate`, each encoded as it is sent."""
    producer = Producer(kafka_settings(producer_config(cfg.kafka, secrets), SendOptions(topic)))
    total = int(rate * seconds)
    started = time.monotonic()
    for i, event in enumerate(itertools.islice(storefront_events(seed=7), total)):
        wait = started + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        producer.produce(topic, encode(event))
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("the producer could not deliver every message")
    return total


def stamped_now(event: Event) -> bytes:
    """Ours: the lab's JSON with `event_time` = the moment it is sent (its Kafka timestamp)."""
    return encode_event(event, event_time_ms=int(time.time() * 1000))


# per row, send time to insert: ours `ingested_at` (the COPY's transaction start), the peer
# `written_at` (clock_timestamp() at its INSERT; its Kafka timestamp comes from InsertField)
DELAYS = {
    "ours": """SELECT extract(epoch FROM ingested_at - event_time) FROM events
               WHERE kafka_topic = %s AND event_time >= to_timestamp(%s)""",
    "peer": """SELECT extract(epoch FROM written_at - kafka_timestamp) FROM peer_events
               WHERE kafka_topic = %s AND kafka_timestamp >= to_timestamp(%s)""",
}


def freshness(
    cfg: Config,
    secrets: Secrets,
    pipeline: Pipeline,
    encode: Callable[[Event], bytes],
    rate: float,
    seconds: float,
) -> dict[str, float]:
    """The pipeline running alone (ours with its default trigger) while events arrive at
    `rate`, after as many seconds (at most 10) of warm-up at the same rate: each row's delay
    from its send to its insert, p50 and p95."""
    process = pipeline.start()
    try:
        # the first batches start the Python workers and compile the JVM's code: not measured
        warm = produce_paced(cfg, secrets, pipeline.topic, encode, rate, min(seconds, 10))
        wait_rows(pipeline, warm, process, f"{pipeline.name} (warm-up)", 300)
        say(f"freshness, {pipeline.name}: {rate:,.0f} msg/s for {seconds:.0f}s")
        # down to the millisecond: both stamps (ours `event_time`, the peer's Kafka timestamp)
        # are whole milliseconds, so a message sent in t_from's millisecond would fall before it
        t_from = math.floor(time.time() * 1000) / 1000
        total = warm + produce_paced(cfg, secrets, pipeline.topic, encode, rate, seconds)
        wait_rows(pipeline, total, process, pipeline.name, 300)
    finally:
        kill_group(process, missing_ok=True)
    rows = fetch(pipeline.db, DELAYS[pipeline.name], (pipeline.topic, t_from))
    delays = [float(d) for (d,) in rows]
    figures = {
        "rows": len(delays),
        "p50_s": round(percentile(delays, 50), 3),
        "p95_s": round(percentile(delays, 95), 3),
    }
    say(f"freshness, {pipeline.name}: p50 / p95 {_pair(figures)}s")
    return figures


def create_peer_table(db: ConnectionParams) -> None:
    execute(
        db,
        f"""CREATE TABLE {PEER_TABLE} (LIKE events INCLUDING DEFAULTS);
            ALTER TABLE {PEER_TABLE}
                ADD COLUMN kafka_timestamp timestamptz,
                ADD COLUMN written_at timestamptz NOT NULL DEFAULT clock_timestamp()""",
    )


def _pair(figures: dict[str, float]) -> str:
    return f"{figures['p50_s']:.2f} / {figures['p95_s']:.2f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = benchmark_parser(__doc__, "30,000 messages, 6 s of freshness")
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=5000, help="the peer's batch.size")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=250_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="msg/s for the freshness")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of it")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.max_offsets_per_trigger, args.duration = 30_000, 7_500, 6.0
    base_cfg, base_secrets = setup_env(args.env)
    n = args.messages
    work = Path(tempfile.mkdtemp(prefix="bench-peer-"))  # logs and properties, kept to read
    say(f"logs and settings of every run in {work}")
    results: dict[str, Any] = {"machine": machine_facts(), "messages": n}
    bootstrap = str(producer_config(base_cfg.kafka, base_secrets)["bootstrap.servers"])
    with (
        fresh_topic(base_cfg, base_secrets, "bench-peer-ours", args.partitions) as ours_topic,
        fresh_topic(base_cfg, base_secrets, "bench-peer-connect", args.partitions) as peer_topic,
        fresh_topic(base_cfg, base_secrets, "bench-peer-ours-f", args.partitions) as ours_fresh,
        fresh_topic(base_cfg, base_secrets, "bench-peer-connect-f", args.partitions) as peer_fresh,
        scratch_database(db_params(base_secrets), "bench_peer") as db,
    ):
        say("the same rows for both: the lab's JSON for ours, with an inline schema for the peer")
        results["load_msg_per_s"] = {
            "ours": load_topic(base_cfg, base_secrets, ours_topic, n),
            "peer": load_topic(base_cfg, base_secrets, peer_topic, n, encode_with_schema),
        }
        create_peer_table(db)
        secrets = secrets_for(base_secrets, db)
        job = OurJob(base_cfg, secrets, ours_topic, work, args.max_offsets_per_trigger)

        def peer(run: str, topic: str = peer_topic) -> ConnectWorker:
            return ConnectWorker(work / run, bootstrap, topic, db, args.partitions, args.batch_size)

        first = peer("throughput")
        results["peer_settings"] = {
            "connector": first.connector_settings() | {"connection.url": "(the scratch database)"},
            "worker": first.worker_settings(),
            "release": "connect-runtime 4.1.1, debezium-connector-jdbc 3.5.0.Final",
        }
        say(f"peer settings: {json.dumps(results['peer_settings']['connector'])}")
        ours = throughput(ours_pipeline(db, job, ours_topic), n)
        theirs = throughput(peer_pipeline(db, first, peer_topic), n)
        results["ours"], results["peer"] = ours, theirs

        # a SIGKILL half-way, on empty tables, from an empty checkpoint / consumer group; both
        # at once (only rows lost and duplicated count here, not speed). The restarted worker
        # has the same connector name, so it resumes its consumer group.
        execute(db, f"TRUNCATE events, {PEER_TABLE}, clickstream_ingest_ledger")
        pipelines = (
            ours_pipeline(db, job, ours_topic),
            peer_pipeline(db, peer("kill"), peer_topic),
        )
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            killed = [pool.submit(killed_half_way, p, n) for p in pipelines]
            results["ours"].update(killed[0].result())
            results["peer"].update(killed[1].result())
        results["freshness"] = {
            "ours": freshness(
                base_cfg,
                base_secrets,
                ours_pipeline(db, job, ours_fresh, available_now=False),
                stamped_now,
                args.rate,
                args.duration,
            ),
            "peer": freshness(
                base_cfg,
                base_secrets,
                peer_pipeline(db, peer("freshness", peer_fresh), peer_fresh),
                encode_with_schema,
                args.rate,
                args.duration,
            ),
        }
        results["freshness"]["rate_msg_per_s"] = args.rate
    ratio = ours["rows_per_s"] / theirs["rows_per_s"]
    results.update(
        {
            "ours_over_peer_rows_per_s": ratio,
            "ours_lost": results["ours"]["lost"],
            "ours_duplicated": results["ours"]["duplicated"],
            "peer_lost": results["peer"]["lost"],
            "peer_duplicated": results["peer"]["duplicated"],
        }
    )
    print(
        f"\n{'':<34}{'ours':>14}{'peer (Connect)':>16}\n"
        f"{'end to end, rows/s':<34}{ours['rows_per_s']:>14,.0f}{theirs['rows_per_s']:>16,.0f}\n"
        f"{'database CPU, us/row':<34}{ours['db_cpu_us_per_row']:>14.1f}"
        f"{theirs['db_cpu_us_per_row']:>16.1f}\n"
        f"{'peak memory, MiB':<34}{ours['peak_memory_mib']:>14,.0f}"
        f"{theirs['peak_memory_mib']:>16,.0f}\n"
        f"{'SIGKILL half-way: rows lost':<34}{results['ours_lost']:>14,}"
        f"{results['peer_lost']:>16,}\n"
        f"{'SIGKILL half-way: duplicated':<34}{results['ours_duplicated']:>14,}"
        f"{results['peer_duplicated']:>16,}\n"
        f"{'freshness p50 / p95, s':<34}{_pair(results['freshness']['ours']):>14}"
        f"{_pair(results['freshness']['peer']):>16}\n"
        f"ours over the peer: {ratio:.2f}x rows/s"
    )
    return finish("peer_connect", args, results)


if __name__ == "__main__":
    main()
