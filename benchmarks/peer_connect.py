"""A real peer in the same run: Kafka Connect with Debezium's JDBC sink against the ingest job.

The peer is what a user would wire by hand instead of this project: a standalone Connect worker
(4.2.1) with `io.debezium:debezium-connector-jdbc` 3.5.0.Final, the newest release Maven Central
serves here with all its dependencies (3.6.x needs a `debezium-sink` that is not served;
Confluent's and Aiven's JDBC sinks are not served at all). Like with like:
- the same messages: both read one topic of N lab rows (`lab_uniform_events(1)`) in the lab's
  plain JSON, the same bytes. Connect's `JsonConverter` takes the six fields' schema from its
  config (`schema.content`, Kafka 4.2's KIP-1054) instead of an envelope in every message (425
  bytes of schema around a row of 116 on average); Debezium's sink needs a schema, and ours
  cannot read the envelope, so this is the one way both read the same bytes;
- the same rows: each row's `event_time` is its Kafka timestamp (ours: no `event_time` in the
  message; the peer: Connect's `InsertField`, which also adds the topic, partition and offset),
  checked after each phase by count and checksum of the rows in both tables;
- a table shaped like ours: `peer_events` is `LIKE events INCLUDING ALL`, range-partitioned on
  `event_time` with the partitions of `events` (pg_partman's), the same indexes (no primary key,
  as `events`), and on Citus distributed by `customer_id`, colocated with `events`; the shapes
  are compared before the run;
- one clock: `ingested_at` defaults to `clock_timestamp()` in both tables (the bootstrap's
  `now()` is the transaction's start, which would date our rows up to a COPY earlier than the
  peer's): every row is stamped as it is written, just before its transaction commits.

Figures, both measured in this run:
- end to end: rows/s from the start of the process to the last row written (each from an empty
  checkpoint or consumer group), the database's CPU per row, peak memory of each process tree
  (ours: the job's Python, its JVM and Python workers; the peer: its JVM);
- a SIGKILL of each pipeline half-way through, then a restart: rows lost and rows duplicated
  (by Kafka partition and offset). The peer is at-least-once by design, so its duplicates are
  counted, not tuned away;
- freshness at 2,000 msg/s (`--rate`, `--duration` 60 s): the restarted pipeline of the kill
  (warm by then) reads a topic of its own as well, and each in turn gets events there, after
  `--warm-up` seconds at the same rate, while the other is idle or gone: per row, from its
  Kafka timestamp (its send) to `ingested_at`, p50 and p95.
Progress is read from bookkeeping (our batch records, the peer table's `event_id` sequence),
never by counting the table being written: a `count(*)` poll cost more database CPU than the writes.
The peer is tuned as Debezium's documentation recommends for throughput: `batch.size` with the
consumer's `max.poll.records` as large, one task per partition, and the PostgreSQL driver's
`reWriteBatchedInserts`. The settings are printed.

Run: `.venv/bin/python -m benchmarks.peer_connect [--messages 2000000] [--quick]
[--env local-citus]`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
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

import psycopg2.extensions
from confluent_kafka import ConsumerGroupTopicPartitions, Producer
from confluent_kafka.admin import AdminClient

from benchmarks.common import DbCpuMeter, PeakMemory
from benchmarks.end_to_end import load_topic
from benchmarks.harness import (
    Cells,
    Scenario,
    Target,
    db_params,
    millions,
    n0,
    percentile,
    say,
    scratch_database,
    setup_env,
    verdict,
)
from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.fields import ID_FIELDS, LAB_FIELDS
from clickstream_pipeline.core.secrets import Secrets, env_variable_name
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.traffic.generator import (
    encode_event,
    lab_uniform_events,
    storefront_events,
)
from clickstream_pipeline.traffic.producer import ClientConf, SendOptions, kafka_settings
from clickstream_pipeline.warehouse.database import ConnectionParams, connect, fetch
from devkit.db import citus_workers, execute
from devkit.ports import free_port
from devkit.processes import kill_group, log_tail
from devkit.stack import STACK_SECRETS, fresh_topic, secrets_for

ROOT = Path(__file__).resolve().parents[1]
CONNECT_JARS = ROOT / ".stack" / "connect" / "jars"
CONNECT_RELEASE = "connect-runtime 4.2.1, debezium-connector-jdbc 3.5.0.Final"
PEER_TABLE = "peer_events"
CONNECTOR_CLASS = "io.debezium.connector.jdbc.JdbcSinkConnector"
PASSWORD_VARIABLE = "CLICKSTREAM_PEER_DB_PASSWORD"
STALLED_S = 180  # no new row for this long (a JVM's start included): the run is stuck

# the lab's six fields as a Connect schema: JsonConverter's `schema.content`, so each message
# is the lab's plain JSON, the bytes ours reads, instead of a {"schema":..,"payload":..} envelope
LAB_SCHEMA = {
    "type": "struct",
    "name": "clickstream.lab_event",
    "optional": False,
    "fields": [
        {"field": f, "type": "int64" if f in ID_FIELDS else "string", "optional": False}
        for f in LAB_FIELDS
    ],
}


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


# Each row as text: where it came from, its time (to the millisecond: Kafka's) and the lab's
# fields; `LAB_ONLY` leaves out the first two for rows of two topics (the freshness runs').
ROW_TEXT = """concat_ws('|', kafka_partition, kafka_offset,
                         (extract(epoch FROM event_time) * 1000)::bigint, {lab}, source_event_id)"""
LAB_TEXT = "concat_ws('|', {lab})"


def written_rows(
    db: ConnectionParams, table: str, topic: str, since: float | None = None
) -> dict[str, Any]:
    """The rows a pipeline wrote from `topic` (those with `event_time` >= `since`, if given):
    how many, how many distinct, and checksums of the distinct rows and of all (sums of their
    64-bit hashes, so the order they were written in does not count), computed in SQL. The
    same messages make the same checksums whichever pipeline wrote them."""
    text = (LAB_TEXT if since is not None else ROW_TEXT).format(lab=", ".join(LAB_FIELDS))
    where = "kafka_topic = %s" + (
        " AND event_time >= to_timestamp(%s)" if since is not None else ""
    )
    ((rows, distinct, checksum, every),) = fetch(
        db,
        f"""SELECT coalesce(sum(copies), 0), count(*), coalesce(sum(h), 0)::text,
                   coalesce(sum(h::numeric * copies), 0)::text FROM (
                SELECT hashtextextended({text}, 0) AS h, count(*) AS copies
                FROM {table} WHERE {where} GROUP BY 1) AS distinct_rows""",  # noqa: S608
        (topic,) if since is None else (topic, since),
    )
    return {
        "rows": int(rows),
        "distinct": int(distinct),
        "checksum": checksum,
        "checksum_all": every,
    }


def same_rows(
    what: str, ours: dict[str, Any], peer: dict[str, Any], expected: int, copies: bool = False
) -> None:
    """Both wrote the `expected` rows, the same ones: count and checksum of the distinct rows
    (a row written twice counts once), or with `copies` of all rows (two events of a session
    can have the same fields, and no topic and offset tell them apart)."""
    say(f"{what}: ours {ours}, peer {peer}")
    count, checksum = ("rows", "checksum_all") if copies else ("distinct", "checksum")
    if not ours[count] == peer[count] == expected or ours[checksum] != peer[checksum]:
        raise RuntimeError(
            f"{what}: the two pipelines did not write the same {expected:,} rows: "
            f"ours {ours}, the peer {peer}"
        )


@dataclass
class Poll:
    """A count asked again and again on connections kept open (one a node), summed over them:
    a progress poll every 0.2 s should cost the servers a query, not a connection."""

    nodes: list[ConnectionParams]
    text: str
    args: tuple[Any, ...] = ()
    _conns: list[psycopg2.extensions.connection] = field(default_factory=list)

    def __call__(self) -> int:
        if not self._conns:
            for node in self.nodes:
                conn = connect(node, application_name="peer-benchmark-progress")
                conn.autocommit = True  # a fresh statistics snapshot each time
                self._conns.append(conn)
        total = 0
        for conn in self._conns:
            with conn.cursor() as cur:
                cur.execute(self.text, self.args or None)
                total += int(cur.fetchone()[0] or 0)
        return total

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        self._conns.clear()


@dataclass
class Pipeline:
    """One of the two, as the benchmark drives it: how to start it, how many rows it has
    written so far (cheap: read every 0.2-0.5 s without touching the table it writes), and when
    its first and last rows were written (exact, on one clock, read once at the end).

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
    # after a SIGKILL: start it again, running (it serves the freshness run afterwards)
    restart: Callable[[], subprocess.Popen] | None = None
    fresh_topic: str = ""  # the topic of its freshness run, read from its kill run on
    # after a SIGKILL, before the restart: the rows its table will hold from `topic` once the
    # restarted pipeline has caught up with `n` messages
    rows_when_done: Callable[[int], int] = lambda n: n


def _epochs(db: ConnectionParams, text: str, args: tuple[Any, ...]) -> tuple[float, float]:
    first, last = fetch(db, text, args)[0]
    return float(first), float(last)


def _span(db: ConnectionParams, table: str, topic: str) -> tuple[float, float]:
    """The first and last row's `ingested_at` (clock_timestamp() as each was written)."""
    return _epochs(
        db,
        f"""SELECT extract(epoch FROM min(ingested_at)), extract(epoch FROM max(ingested_at))
            FROM {table} WHERE kafka_topic = %s""",  # noqa: S608 (one of two constants)
        (topic,),
    )


def ours_pipeline(
    db: ConnectionParams,
    job: OurJob,
    topic: str,
    polls: contextlib.ExitStack,
    fresh: str = "",
) -> Pipeline:
    """Progress: rows in `events` by the query's recorded batches (its own bookkeeping). A
    batch replayed after a kill records the rows its first attempt wrote as duplicates, and
    its record replaces the first attempt's, so written + duplicates is what it holds.

    With `fresh`, the query reads that topic as well (the same subscription before and after a
    kill) and its restart keeps running, to serve the freshness run."""
    query_name = f"peer-ours-{uuid.uuid4().hex[:8]}"
    topics = [topic, *([fresh] if fresh else [])]
    written = Poll(
        [db],
        """SELECT coalesce(sum(rows_written + rows_duplicate), 0)
           FROM clickstream_ingest_batches WHERE query_name = %s""",
        (query_name,),
    )
    polls.callback(written.close)
    return Pipeline(
        "ours",
        "events",
        topic,
        db,
        lambda: job.start(query_name, topics, available_now=True),
        written,
        lambda: _span(db, "events", topic),
        True,
        job.log_tail,
        restart=lambda: job.start(query_name, topics, available_now=False),
        fresh_topic=fresh,
    )


def peer_pipeline(
    db: ConnectionParams, worker: ConnectWorker, kafka: ClientConf, polls: contextlib.ExitStack
) -> Pipeline:
    """Progress: rows inserted into `peer_events` since this pipeline was made, by the
    table's own sequence (each row's `event_id`, drawn as it is inserted, on the coordinator
    on Citus; a re-sent row counted again, a row of an aborted batch too). The servers' insert
    statistics lag: an idle session reports them up to 10 s late."""
    inserted = Poll(
        [db],
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM peer_events_event_id_seq",
    )
    polls.callback(inserted.close)
    base = inserted()
    topic = worker.topics[0]

    def rows_when_done(n: int) -> int:
        # the killed worker's sessions gone, its last transaction aborted or committed: the
        # restart sends again all from its group's last committed offsets on
        worker.wait_sessions_gone()
        ((rows,),) = fetch(db, "SELECT count(*) FROM peer_events WHERE kafka_topic = %s", (topic,))
        committed = committed_offsets(kafka, f"connect-{worker.name}", topic)
        say(f"peer: {rows:,} rows written, {committed:,} offsets committed before the kill")
        return int(rows) + n - committed

    return Pipeline(
        "peer",
        PEER_TABLE,
        topic,
        db,
        worker.start,
        lambda: inserted() - base,
        lambda: _span(db, PEER_TABLE, topic),
        False,
        worker.log_tail,
        restart=worker.start,
        fresh_topic=worker.topics[1] if len(worker.topics) > 1 else "",
        rows_when_done=rows_when_done,
    )


def committed_offsets(kafka: ClientConf, group: str, topic: str) -> int:
    """The sum over `topic`'s partitions of `group`'s committed offsets (0 where none)."""
    admin = AdminClient(kafka)
    request = [ConsumerGroupTopicPartitions(group)]
    answer = admin.list_consumer_group_offsets(request)[group].result(timeout=30)
    return sum(
        tp.offset for tp in answer.topic_partitions or [] if tp.topic == topic and tp.offset > 0
    )


def wait_rows(
    pipeline: Pipeline,
    at_least: int,
    process: subprocess.Popen,
    what: str,
    timeout_s: float,
    done: Callable[[], bool] | None = None,
    stalled_s: float = STALLED_S,
    every_s: float = 0.5,
    check_every_s: float = 5.0,
) -> float:
    """Poll every `every_s` until the pipeline wrote `at_least` rows (and `done()`, if given:
    asked as soon as the count is reached, then every `check_every_s`), printing the rate every
    5 s; returns when (monotonic). Fails, with the end of the pipeline's log, after `timeout_s`
    or once no row came for `stalled_s`."""
    started = time.monotonic()
    last_print = last_move = started
    last_check = -math.inf
    moved = -1
    while True:
        n = pipeline.progress()
        now = time.monotonic()
        if n != moved:
            moved, last_move = n, now
        if n >= at_least:
            if done is None:
                return now
            if now - last_check >= check_every_s:  # `done` scans the table: not every poll
                last_check = now
                if done():
                    return time.monotonic()
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
        time.sleep(every_s)


def _check_every_s(n: int) -> float:
    """How often a wait may scan the table: a quick run's is tiny, a full run's 2M rows not."""
    return 5.0 if n > 100_000 else 0.5


@dataclass
class ConnectWorker:
    """A standalone Connect worker running Debezium's JDBC sink from `topics` into
    `peer_events`."""

    work: Path
    bootstrap_servers: str
    topics: tuple[str, ...]
    db: ConnectionParams
    tasks: int
    batch_size: int
    name: str = field(default_factory=lambda: f"peer-{uuid.uuid4().hex[:8]}")
    port: int = field(default_factory=free_port)

    def connector_settings(self) -> dict[str, str]:
        url = self.db.jdbc_url()
        url += ("&" if "?" in url else "?") + "reWriteBatchedInserts=true"
        url += f"&ApplicationName={self.name}"  # its sessions, told apart after a kill
        settings = {
            "name": self.name,
            "connector.class": CONNECTOR_CLASS,
            "tasks.max": str(self.tasks),
            "topics": ",".join(self.topics),
            "connection.url": url,
            "connection.username": self.db.user or "",
            "insert.mode": "insert",
            "primary.key.mode": "none",
            "schema.evolution": "none",
            "collection.name.format": PEER_TABLE,
            "batch.size": str(self.batch_size),
            # where each row came from, and its Kafka timestamp as `event_time` (as ours)
            "transforms": "kafka",
            "transforms.kafka.type": "org.apache.kafka.connect.transforms.InsertField$Value",
            "transforms.kafka.topic.field": "kafka_topic",
            "transforms.kafka.partition.field": "kafka_partition",
            "transforms.kafka.offset.field": "kafka_offset",
            "transforms.kafka.timestamp.field": "event_time",
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
            # the schema once, here, not in every message (KIP-1054, Kafka 4.2)
            "value.converter.schema.content": json.dumps(LAB_SCHEMA, separators=(",", ":")),
            "offset.storage.file.filename": str(self.work / "connect.offsets"),
            "listeners": f"http://127.0.0.1:{self.port}",
            # plugins found by their service manifests, not by scanning every class (KIP-898)
            "plugin.discovery": "service_load",
            "config.providers": "env",
            "config.providers.env.class": (
                "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
            ),
            "consumer.max.poll.records": str(self.batch_size),
            "consumer.auto.offset.reset": "earliest",
            # a restarted worker's consumers wait for the killed one's to expire before they
            # get partitions: 6 s (the broker's least) instead of 45 s of nothing written. It
            # changes no figure: rows lost and duplicated are the same whenever it resumes
            "consumer.session.timeout.ms": "6000",
            "consumer.heartbeat.interval.ms": "2000",
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
            "-Duser.timezone=UTC",  # the driver's session time zone, for `event_time`
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

    def wait_sessions_gone(self, timeout_s: float = 30) -> None:
        """Until no session of this worker's is left on the database (after a SIGKILL, each
        ends once its server process sees the socket closed, aborting what it had begun)."""
        text = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        deadline = time.monotonic() + timeout_s
        while fetch(self.db, text, (self.name,))[0][0]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"sessions of the killed {self.name} still open")
            time.sleep(0.1)


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
    """The ingest job (`clickstream-ingest`) in a process of its own."""

    cfg: Config
    secrets: Secrets
    work: Path
    max_offsets_per_trigger: int

    def start(
        self, query_name: str, topics: list[str], available_now: bool = True
    ) -> subprocess.Popen:
        env = {**os.environ}
        for key in STACK_SECRETS:  # the scratch database's URL with the stack's others
            if (value := self.secrets.get(key)) is not None:
                env[env_variable_name(self.cfg.secrets.name_of(key))] = value.get_secret_value()
        command = [
            sys.executable,
            "-m",
            "clickstream_pipeline.jobs.ingest",
            *("--env", self.cfg.env),
            *(["--available-now"] if available_now else []),
            *("--set", "secrets.backend=env"),
            *("--set", f"kafka.topics={json.dumps(topics)}"),
            *("--set", f"ingest.query_name={query_name}"),
            # a restarted, running query catches up in batches of this size too (at the
            # freshness run's rate the cap never binds: its default trigger rules)
            *("--set", f"kafka.max_offsets_per_trigger={self.max_offsets_per_trigger}"),
        ]
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
        complete = lambda: _complete(pipeline, n)  # noqa: E731
        wait_rows(pipeline, n, process, what, 600, complete, check_every_s=_check_every_s(n))
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
        # the first row's write, on the clock of the last
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


def killed_half_way(pipeline: Pipeline, n: int) -> tuple[dict[str, int], subprocess.Popen]:
    """SIGKILL at half the rows, start again, let it catch up: rows lost and duplicated. The
    restarted process is left running (the freshness run's), its owner to kill."""
    what = pipeline.name
    process = pipeline.start()
    try:
        wait_rows(pipeline, n // 2, process, f"{what} (to be killed)", 3600, every_s=0.1)
    finally:
        kill_group(process, missing_ok=True)
    expected = pipeline.rows_when_done(n)
    at_kill = pipeline.progress()
    say(f"{what}: SIGKILL at {at_kill:,} rows; starting again")
    process = (pipeline.restart or pipeline.start)()
    try:

        def done() -> bool:
            got = delivery(pipeline.db, pipeline.table, pipeline.topic, n)
            return got.lost == 0 and got.rows >= expected

        what_now = f"{what} (restarted)"
        wait_rows(pipeline, expected, process, what_now, 3600, done, every_s=0.2,
                  check_every_s=_check_every_s(n))  # fmt: skip
    except BaseException:
        kill_group(process, missing_ok=True)
        raise
    got = delivery(pipeline.db, pipeline.table, pipeline.topic, n)
    say(f"{what}: after the kill {got.lost:,} rows lost, {got.duplicated:,} duplicated")
    return {"killed_at_rows": at_kill, "lost": got.lost, "duplicated": got.duplicated}, process


def produce_paced(kafka: ClientConf, topic: str, rate: float, seconds: float) -> int:
    """Storefront events to `topic` at `rate`, in the lab's JSON: the same events, in the same
    bytes, whichever pipeline's topic; each Kafka timestamp is the moment it is sent."""
    producer = Producer(kafka_settings(kafka, SendOptions(topic)))
    total = int(rate * seconds)
    started = time.monotonic()
    for i, event in enumerate(itertools.islice(storefront_events(seed=7), total)):
        wait = started + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        producer.produce(topic, encode_event(event))
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("the producer could not deliver every message")
    return total


# per row, send to write, the same for both: its Kafka timestamp (`event_time`) to `ingested_at`
# (clock_timestamp() as the row was written, the default in both tables)
DELAYS = """SELECT extract(epoch FROM ingested_at - event_time) FROM {table}
            WHERE kafka_topic = %s AND event_time >= to_timestamp(%s)"""


def freshness(
    kafka: ClientConf,
    pipeline: Pipeline,
    process: subprocess.Popen,
    rate: float,
    seconds: float,
    warm_up_s: float,
) -> tuple[dict[str, float], dict[str, Any]]:
    """The pipeline's running process (the restart of its kill run, warm) while events arrive
    at `rate` on its freshness topic, after `warm_up_s` of the same: each row's delay from its
    send to its write, p50 and p95; and the rows measured (`written_rows`)."""
    topic, name = pipeline.fresh_topic, pipeline.name
    before = pipeline.progress()
    warm = produce_paced(kafka, topic, rate, warm_up_s)
    wait_rows(pipeline, before + warm, process, f"{name} (warm-up)", 300, every_s=0.2)
    say(f"freshness, {name}: {rate:,.0f} msg/s for {seconds:g}s")
    # down to the millisecond: Kafka timestamps are whole milliseconds, so a message sent in
    # t_from's millisecond would fall before it
    t_from = math.floor(time.time() * 1000) / 1000
    measured = produce_paced(kafka, topic, rate, seconds)
    window = f"SELECT count(*) FROM {pipeline.table} WHERE kafka_topic = %s AND event_time >= to_timestamp(%s)"  # noqa: S608, E501

    def visible() -> bool:  # a Citus worker counts its rows at PREPARE, before COMMIT PREPARED
        return int(fetch(pipeline.db, window, (topic, t_from))[0][0]) >= measured

    wait_rows(pipeline, before + warm + measured, process, name, 300, visible, every_s=0.2,
              check_every_s=0.5)  # fmt: skip
    rows = fetch(pipeline.db, DELAYS.format(table=pipeline.table), (topic, t_from))
    delays = [float(d) for (d,) in rows]
    figures = {
        "rows": len(delays),
        "p50_s": round(percentile(delays, 50), 3),
        "p95_s": round(percentile(delays, 95), 3),
    }
    say(f"freshness, {name}: p50 / p95 {_pair(figures)}s")
    return figures, written_rows(pipeline.db, pipeline.table, topic, since=t_from)


def create_peer_table(db: ConnectionParams) -> None:
    """`peer_events` shaped as `events`: its columns, defaults and indexes, range partitions on
    `event_time` with the same bounds (pg_partman made those of `events`), a sequence of its own,
    and on Citus distributed by `customer_id`, colocated with `events`. First, in both tables,
    `ingested_at` becomes the moment each row is written (clock_timestamp(), not the
    transaction's start)."""
    execute(
        db,
        "ALTER TABLE events ALTER COLUMN ingested_at SET DEFAULT clock_timestamp()",
        f"CREATE TABLE {PEER_TABLE} (LIKE events INCLUDING ALL) PARTITION BY RANGE (event_time)",
        f"CREATE SEQUENCE {PEER_TABLE}_event_id_seq OWNED BY {PEER_TABLE}.event_id",
        f"""ALTER TABLE {PEER_TABLE} ALTER COLUMN event_id
            SET DEFAULT nextval('{PEER_TABLE}_event_id_seq')""",
        f"""DO $$
            DECLARE part record;
            BEGIN
                FOR part IN
                    SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
                    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhparent = 'public.events'::regclass
                LOOP
                    EXECUTE format('CREATE TABLE %I PARTITION OF {PEER_TABLE} %s',
                                   'peer_' || part.relname, part.bound);
                END LOOP;
            END $$""",  # noqa: S608 (a constant)
    )
    if citus_workers(db):
        execute(
            db,
            f"""SELECT create_distributed_table('{PEER_TABLE}', 'customer_id',
                                                colocate_with => 'events')""",
        )


def table_shape(db: ConnectionParams, table: str) -> dict[str, Any]:
    """What makes a table cost what it costs to write, names aside: its columns, partition key
    and partitions' bounds, indexes and keys, and on Citus its distribution column, colocation
    group and shards."""
    ((columns, key, partitions, bounds, indexes),) = fetch(
        db,
        r"""SELECT
              (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod)
                                 || CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', '
                                 ORDER BY attnum)
               FROM pg_attribute WHERE attrelid = t.oid AND attnum > 0 AND NOT attisdropped),
              pg_get_partkeydef(t.oid),
              (SELECT count(*) FROM pg_inherits WHERE inhparent = t.oid),
              (SELECT md5(string_agg(pg_get_expr(c.relpartbound, c.oid), ';'
                                     ORDER BY pg_get_expr(c.relpartbound, c.oid)))
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = t.oid),
              (SELECT string_agg(d, '; ' ORDER BY d) FROM (
                 SELECT CASE WHEN x.indisprimary THEN 'primary key '
                             WHEN x.indisunique THEN 'unique ' ELSE '' END
                        || regexp_replace(pg_get_indexdef(x.indexrelid), '^.* USING ', 'USING ')
                 FROM pg_index x WHERE x.indrelid = t.oid) AS indexes (d))
            FROM pg_class t WHERE t.oid = %s::regclass""",
        (table,),
    )
    shape = {
        "columns": columns,
        "partition_key": key,
        "partitions": int(partitions),
        "partition_bounds_md5": bounds,
        "indexes": indexes or "",
    }
    if citus_workers(db):
        ((column, colocation, shards),) = fetch(
            db,
            """SELECT column_to_column_name(p.logicalrelid, p.partkey), p.colocationid,
                      (SELECT count(*) FROM pg_dist_shard s WHERE s.logicalrelid = p.logicalrelid)
               FROM pg_dist_partition p WHERE p.logicalrelid = %s::regclass""",
            (table,),
        )
        shape |= {"distributed_by": column, "colocation_id": colocation, "shards": shards}
    return shape


def _pair(figures: dict[str, float]) -> str:
    return f"{figures['p50_s']:.2f} / {figures['p95_s']:.2f}"


def message_bytes(n: int) -> dict[str, float]:
    """The bytes of the messages both read (the lab's JSON), against the envelope the peer
    read before Connect took its schema from its config."""
    sample = [encode_event(e) for e in itertools.islice(lab_uniform_events(1), min(n, 10_000))]
    plain = sum(map(len, sample)) / len(sample)
    envelope = len(json.dumps({"schema": LAB_SCHEMA, "payload": None}, separators=(",", ":")))
    return {"mean": round(plain, 1), "with_an_envelope": round(plain + envelope - 4, 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    base_cfg, base_secrets = setup_env(args.env)
    n = args.messages
    work = Path(tempfile.mkdtemp(prefix="bench-peer-"))  # logs and properties, kept to read
    say(f"logs and settings of every run in {work}")
    kafka = producer_config(base_cfg.kafka, base_secrets)
    results: dict[str, Any] = {"messages": n}
    processes: list[subprocess.Popen] = []
    with (
        fresh_topic(kafka, "bench-peer", args.partitions) as topic,
        fresh_topic(kafka, "bench-peer-ours-f", args.partitions) as ours_fresh,
        fresh_topic(kafka, "bench-peer-connect-f", args.partitions) as peer_fresh,
        scratch_database(db_params(base_secrets), "bench_peer") as db,
        contextlib.ExitStack() as polls,
    ):
        say("one topic, the lab's plain JSON, read by both")
        results["topics"] = {"ours": topic, "peer": topic}
        results["message_bytes"] = message_bytes(n)
        results["load_msg_per_s"] = load_topic(base_cfg, base_secrets, topic, n)
        create_peer_table(db)
        results["tables"] = {t: table_shape(db, t) for t in ("events", PEER_TABLE)}
        if results["tables"]["events"] != results["tables"][PEER_TABLE]:
            raise RuntimeError(f"{PEER_TABLE} is not shaped as events: {results['tables']}")
        say(f"{PEER_TABLE} shaped as events: {json.dumps(results['tables']['events'])}")
        secrets = secrets_for(base_secrets, db)
        job = OurJob(base_cfg, secrets, work, args.max_offsets_per_trigger)
        bootstrap = str(kafka["bootstrap.servers"])

        def peer(run: str, *topics: str) -> ConnectWorker:
            return ConnectWorker(
                work / run, bootstrap, topics, db, args.partitions, args.batch_size
            )

        first = peer("throughput", topic)
        results["peer_settings"] = {
            "connector": first.connector_settings() | {"connection.url": "(the scratch database)"},
            "worker": first.worker_settings(),
            "release": CONNECT_RELEASE,
        }
        say(f"peer settings: {json.dumps(results['peer_settings']['connector'])}")
        ours = throughput(ours_pipeline(db, job, topic, polls), n)
        theirs = throughput(peer_pipeline(db, first, kafka, polls), n)
        results["ours"], results["peer"] = ours, theirs
        same: dict[str, Any] = {"throughput": {
            "ours": written_rows(db, "events", topic), "peer": written_rows(db, PEER_TABLE, topic)
        }}  # fmt: skip
        same_rows("throughput", same["throughput"]["ours"], same["throughput"]["peer"], n)

        # a SIGKILL half-way, on empty tables, from an empty checkpoint / consumer group; both
        # at once (only rows lost and duplicated count here, not speed). The restarted worker
        # has the same connector name, so it resumes its consumer group. Each restart keeps
        # running, and serves the freshness run (warm by then: a JVM's start is not freshness)
        execute(db, f"TRUNCATE events, {PEER_TABLE}, clickstream_ingest_ledger")
        pipelines = (
            ours_pipeline(db, job, topic, polls, fresh=ours_fresh),
            peer_pipeline(db, peer("kill", topic, peer_fresh), kafka, polls),
        )
        try:
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                killed = [pool.submit(killed_half_way, p, n) for p in pipelines]
            processes += [f.result()[1] for f in killed if f.exception() is None]
            for future in killed:  # each restarted process is known before one's error
                if (error := future.exception()) is not None:
                    raise error
            for name, future in zip(("ours", "peer"), killed, strict=True):
                results[name].update(future.result()[0])
            same["after_kill"] = {
                "ours": written_rows(db, "events", topic),
                "peer": written_rows(db, PEER_TABLE, topic),
            }
            same_rows("after the kill", same["after_kill"]["ours"], same["after_kill"]["peer"], n)
            if same["after_kill"]["ours"]["checksum"] != same["throughput"]["ours"]["checksum"]:
                raise RuntimeError("the rows after the kill are not those of the first run")
            results["freshness"] = {"rate_msg_per_s": args.rate, "seconds": args.duration}
            same["freshness"] = {}
            for (name, pipeline), process in zip(
                (("ours", pipelines[0]), ("peer", pipelines[1])), processes, strict=True
            ):  # ours while the peer idles; the peer once ours is gone
                fresh, same["freshness"][name] = freshness(
                    kafka, pipeline, process, args.rate, args.duration, args.warm_up
                )
                kill_group(process, missing_ok=True)
                results["freshness"][name] = fresh
            measured = int(args.rate * args.duration)
            same_rows(
                "freshness", same["freshness"]["ours"], same["freshness"]["peer"], measured, True
            )
        finally:
            for process in processes:
                kill_group(process, missing_ok=True)
        results["same_rows"] = same
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
    say(f"ours over the peer: {ratio:.2f}x rows/s; the same rows in each phase")
    return results


def rows(f: dict[str, Any]) -> list[Cells]:
    ours, peer, fresh = f["ours"], f["peer"], f["freshness"]
    return [
        [f"end to end, {f['messages']:,} lab messages: ours vs Kafka Connect + Debezium JDBC sink",
         f"ours {n0(ours['rows_per_s'])} rows/s, {ours['db_cpu_us_per_row']:.1f} us DB CPU/row, "
         f"{n0(ours['peak_memory_mib'])} MiB", f"peer {n0(peer['rows_per_s'])} rows/s, "
         f"{peer['db_cpu_us_per_row']:.1f} us/row, {n0(peer['peak_memory_mib'])} MiB",
         f"{f['ours_over_peer_rows_per_s']:.2f}x", ""],
        ["SIGKILL half-way, then a restart: rows lost / duplicated",
         f"ours {f['ours_lost']:,} / {f['ours_duplicated']:,}",
         f"peer {f['peer_lost']:,} / {f['peer_duplicated']:,}", "", verdict(f, "exactly_once")],
        [f"freshness at {fresh['rate_msg_per_s']:,.0f} msg/s, send to row written, p50 / p95",
         f"ours {fresh['ours']['p50_s']:.2f} / {fresh['ours']['p95_s']:.2f} s",
         f"peer {fresh['peer']['p50_s']:.2f} / {fresh['peer']['p95_s']:.2f} s", "", ""],
    ]  # fmt: skip


def headline(f: dict[str, Any], citus: dict[str, Any] | None) -> Cells:
    on_citus = f" ({citus['ours_over_peer_rows_per_s']:.2f}x on Citus)" if citus else ""
    return [
        f"vs Kafka Connect + Debezium JDBC sink, {millions(f['messages'])} messages",
        f"{n0(f['ours']['rows_per_s'])} rows/s; after a SIGKILL {f['ours_lost']:,} lost, "
        f"{f['ours_duplicated']:,} duplicated",
        f"{n0(f['peer']['rows_per_s'])} rows/s; {f['peer_lost']:,} lost, "
        f"{f['peer_duplicated']:,} duplicated",
        f"{f['ours_over_peer_rows_per_s']:.2f}x{on_citus}",
    ]


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=5000, help="the peer's batch.size")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=250_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="msg/s for the freshness")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of it")
    parser.add_argument("--warm-up", type=float, default=10.0, help="seconds before it")


SCENARIO = Scenario(
    "peer_connect",
    __doc__ or "",
    run,
    quick={
        "messages": 10_000,
        "max_offsets_per_trigger": 2_500,
        "batch_size": 2_000,
        "duration": 2.0,
        "warm_up": 1.0,
    },
    arguments=arguments,
    targets=lambda f: [
        Target("exactly_once", f["ours_lost"] + f["ours_duplicated"], "<=", 0, "exactly once")
    ],
    rows=rows,
    on_both=True,
    headline=headline,
)

if __name__ == "__main__":
    SCENARIO.main()
