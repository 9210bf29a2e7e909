"""A real peer in the same run, Kafka Connect with Debezium's JDBC sink, against the ingest job:
one topic, tables of one shape, one clock, the same rows checked after each phase; end to end,
a SIGKILL half-way, then freshness (the method: docs/performance.md)."""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import math
import os
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from benchmarks import common
from benchmarks.harness import Scenario, Target, percentile, rate, say, scratch_db
from clickstream_pipeline.core.fields import ID_FIELDS, LAB_FIELDS
from clickstream_pipeline.traffic import generator
from clickstream_pipeline.traffic.producer import ClientConf
from clickstream_pipeline.warehouse.database import ConnectionParams, fetch
from devkit.db import citus_workers, execute
from devkit.ports import free_port
from devkit.processes import kill_group, log_tail
from devkit.stack import fresh_topic, secrets_for
from devkit.waits import wait_until

ROOT = Path(__file__).resolve().parents[1]
CONNECT_JARS = ROOT / ".stack" / "connect" / "jars"
CONNECT_RELEASE = "connect-runtime 4.2.1, debezium-connector-jdbc 3.5.0.Final"
PEER = "Kafka Connect + Debezium JDBC sink"
PEER_TABLE = "peer_events"
TABLES = {"ours": "events", "peer": PEER_TABLE}
PASSWORD_VARIABLE = "CLICKSTREAM_PEER_DB_PASSWORD"
STALLED_S = 180  # no new row for this long (a JVM's start included): the run is stuck
# the lab's six fields as JsonConverter's `schema.content`: each message is the lab's plain JSON
LAB_SCHEMA = {
    "type": "struct",
    "name": "clickstream.lab_event",
    "optional": False,
    "fields": [
        {"field": f, "type": "int64" if f in ID_FIELDS else "string", "optional": False}
        for f in LAB_FIELDS
    ],
}
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
# each row as text: where it came from, its time (Kafka's, to the ms) and the lab's fields; the
# freshness runs' rows (two topics) by the lab's fields alone
ROW_TEXT = """concat_ws('|', kafka_partition, kafka_offset,
                         (extract(epoch FROM event_time) * 1000)::bigint, {lab}, source_event_id)"""
LAB_TEXT = "concat_ws('|', {lab})"
CHECKSUMS = """SELECT coalesce(sum(copies), 0), count(*), coalesce(sum(h), 0)::text,
                      coalesce(sum(h::numeric * copies), 0)::text FROM (
                   SELECT hashtextextended({text}, 0) AS h, count(*) AS copies
                   FROM {table} WHERE {where} GROUP BY 1) AS distinct_rows"""
OURS_WRITTEN = """SELECT coalesce(sum(rows_written + rows_duplicate), 0)
                  FROM clickstream_ingest_batches WHERE query_name = %s"""
PEER_INSERTED = (
    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM peer_events_event_id_seq"
)


@dataclass
class Pipeline:
    """One of the two as the benchmark drives it: its start, and its rows written so far (cheap:
    its bookkeeping, never a scan of the table it writes)."""

    name: str
    table: str
    topic: str
    db: ConnectionParams
    start: Callable[[], subprocess.Popen]
    progress: Callable[[], int]
    stops_by_itself: bool  # ours with --available-now; the peer runs until killed
    log_tail: Callable[[], str]  # the end of its log, for an error
    restart: Callable[[], subprocess.Popen] | None = None  # after a SIGKILL, left running
    fresh_topic: str = ""  # the topic of its freshness run, read from its kill run on
    # after a SIGKILL: the rows its table will hold from `topic` once caught up with n messages
    rows_when_done: Callable[[int], int] = lambda n: n

    def delivery(self) -> tuple[int, int]:
        """The rows it wrote from its topic, and the distinct ones (by partition and offset)."""
        ((rows, distinct),) = fetch(
            self.db,
            f"""SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM {self.table}
                WHERE kafka_topic = %s""",  # noqa: S608 (one of two constants)
            (self.topic,),
        )
        return int(rows), int(distinct)

    def complete(self, n: int, at_least: int | None = None) -> Callable[[], bool]:
        """Every one of the `n` records in the table (and `at_least` rows in all): one scan."""

        def check() -> bool:
            rows, distinct = self.delivery()
            return distinct == n and rows >= (at_least or n)

        return check


def written_rows(db: ConnectionParams, table: str, topic: str, since: float | None = None) -> dict:
    """How many rows were written from `topic` (since `since`), how many distinct, and checksums."""
    text = (LAB_TEXT if since is not None else ROW_TEXT).format(lab=", ".join(LAB_FIELDS))
    where = "kafka_topic = %s" + (" AND event_time >= to_timestamp(%s)" if since else "")
    query = CHECKSUMS.format(text=text, table=table, where=where)
    ((rows, distinct, checksum, every),) = fetch(
        db, query, (topic,) if since is None else (topic, since)
    )
    return {
        "rows": int(rows),
        "distinct": int(distinct),
        "checksum": checksum,
        "checksum_all": every,
    }


def same_rows(what: str, expected: int, ours: dict, peer: dict, copies: bool = False) -> dict:
    """Both wrote the same `expected` rows by count and checksum (all rows: `copies`), or fail."""
    say(f"{what}: ours {ours}, peer {peer}")
    count, checksum = ("rows", "checksum_all") if copies else ("distinct", "checksum")
    if not ours[count] == peer[count] == expected or ours[checksum] != peer[checksum]:
        raise RuntimeError(
            f"{what}: the two pipelines did not write the same {expected:,} rows: "
            f"ours {ours}, the peer {peer}"
        )
    return {"ours": ours, "peer": peer}


def ours_pipeline(
    args: argparse.Namespace,
    db: ConnectionParams,
    log: Path,
    topic: str,
    polls: ExitStack,
    fresh: str = "",
) -> Pipeline:
    """The ingest job in a process of its own, progress from its batch records (duplicates too)."""
    name, topics = f"peer-ours-{uuid.uuid4().hex[:8]}", [topic, *([fresh] if fresh else [])]
    secrets = secrets_for(args.secrets, db)

    settings = {"kafka__topics": json.dumps(topics), "ingest__query_name": name}
    # a restart catches up in batches of this size too
    settings["kafka__max_offsets_per_trigger"] = args.max_offsets_per_trigger
    start = partial(common.start_job, "ingest", args.cfg, secrets, log, **settings)

    written = polls.enter_context(common.KeptQuery(db, OURS_WRITTEN, (name,)))
    return Pipeline(
        "ours",
        "events",
        topic,
        db,
        start=partial(start, "--available-now"),
        progress=lambda: int(written()[0]),
        stops_by_itself=True,
        log_tail=lambda: log_tail(log),
        restart=start,
        fresh_topic=fresh,
    )


def peer_pipeline(worker: ConnectWorker, kafka: ClientConf, polls: ExitStack) -> Pipeline:
    """The Connect worker, progress from its table's `event_id` sequence (statistics lag 10 s)."""
    inserted = polls.enter_context(common.KeptQuery(worker.db, PEER_INSERTED))
    base, topic = int(inserted()[0]), worker.topics[0]

    def rows_when_done(n: int) -> int:  # the restart sends all from the last committed offsets
        worker.wait_sessions_gone()  # the killed one's last transaction aborted or committed
        rows = pipeline.delivery()[0]
        group = f"connect-{worker.name}"
        admin = AdminClient(kafka)  # kept: a client collected early never answers its futures
        answer = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
        offsets = answer[group].result(timeout=30).topic_partitions or []
        committed = sum(tp.offset for tp in offsets if tp.topic == topic and tp.offset > 0)
        say(f"peer: {rows:,} rows written, {committed:,} offsets committed before the kill")
        return rows + n - committed

    pipeline = Pipeline(
        "peer",
        PEER_TABLE,
        topic,
        worker.db,
        start=worker.start,
        progress=lambda: int(inserted()[0]) - base,
        stops_by_itself=False,
        log_tail=lambda: log_tail(worker.work / "connect.log"),
        restart=worker.start,
        fresh_topic=worker.topics[1] if len(worker.topics) > 1 else "",
        rows_when_done=rows_when_done,
    )
    return pipeline


def wait_rows(
    pipeline: Pipeline,
    at_least: int,
    process: subprocess.Popen,
    what: str,
    timeout_s: float,
    done: Callable[[], bool] | None = None,
    stalled_s: float = STALLED_S,
    every_s: float = 0.5,
    check_every_s: float | None = None,
) -> None:
    """Poll every `every_s` until the pipeline wrote `at_least` rows (and `done()`, a scan, asked
    every `check_every_s` from then: by default 5 s past 100,000 rows, else 0.5 s), printing the
    rate every 5 s. Fails with the end of its log after `timeout_s`, or once no row came for
    `stalled_s`."""
    check_every_s = check_every_s or (5.0 if at_least > 100_000 else 0.5)
    started = last_print = last_move = time.monotonic()
    last_check, moved = -math.inf, -1
    while True:
        n, now = pipeline.progress(), time.monotonic()
        if n != moved:
            moved, last_move = n, now
        if n >= at_least and (done is None or now - last_check >= check_every_s):
            last_check = now
            if done is None or done():
                return
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


@dataclass
class ConnectWorker:
    """A standalone Connect worker running Debezium's JDBC sink from `topics` into
    `peer_events`, tuned as Debezium's documentation says for throughput."""

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
            "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
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
            "plugin.discovery": "service_load",  # by service manifests, not every class scanned
            "config.providers": "env",
            "config.providers.env.class": (
                "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
            ),
            "consumer.max.poll.records": str(self.batch_size),
            "consumer.auto.offset.reset": "earliest",
            # a restarted worker gets partitions once the killed one's consumers expire: 6 s (the
            # broker's least), not 45 s of nothing; rows lost and duplicated are the same
            "consumer.session.timeout.ms": "6000",
            "consumer.heartbeat.interval.ms": "2000",
        }

    def start(self) -> subprocess.Popen:
        """The worker in a process group of its own, once its tasks all run."""
        if not any(CONNECT_JARS.glob("connect-runtime-*.jar")):
            raise RuntimeError(f"no Connect jars in {CONNECT_JARS}: scripts/stack/connect.sh jars")
        self.work.mkdir(parents=True, exist_ok=True)
        files = {"worker": self.worker_settings(), "connector": self.connector_settings()}
        for name, settings in files.items():
            lines = (f"{k}={v.replace(chr(92), chr(92) * 2)}\n" for k, v in settings.items())
            (self.work / f"{name}.properties").write_text("".join(lines))
        (self.work / "log4j2.properties").write_text(LOG4J2)
        env = dict(os.environ)
        if self.db.password is not None:
            env[PASSWORD_VARIABLE] = self.db.password.get_secret_value()
        log4j = f"-Dlog4j2.configurationFile={self.work / 'log4j2.properties'}"
        jvm = ["java", "-Xms256m", "-Xmx1g", "-Duser.timezone=UTC", log4j]  # `event_time`'s zone
        main = [f"{CONNECT_JARS}/*", "org.apache.kafka.connect.cli.ConnectStandalone"]
        properties = [str(self.work / f"{name}.properties") for name in files]
        log = self.work / "connect.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [*jvm, "-cp", *main, *properties],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        what = f"Connect's {self.tasks} tasks running"
        wait_until(self._running, 120, what, every_s=0.3, process=process, log=log)
        return process

    def _running(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/connectors/{self.name}/status"
        try:
            tasks = json.loads(urllib.request.urlopen(url, timeout=2).read()).get("tasks", [])
        except OSError:
            return False
        if failed := [t.get("trace", "")[:2000] for t in tasks if t["state"] == "FAILED"]:
            raise RuntimeError(f"the peer's task failed: {failed[0]}")
        return len(tasks) == self.tasks and all(t["state"] == "RUNNING" for t in tasks)

    def wait_sessions_gone(self) -> None:
        """After a SIGKILL each session ends once its server process sees the socket closed."""
        text = "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = %s"
        wait_until(lambda: fetch(self.db, text, (self.name,))[0][0], 30, f"{self.name} gone")


def throughput(pipeline: Pipeline, n: int) -> dict[str, Any]:
    """From the process's start to its last of `n` rows: rows/s, DB CPU per row, peak memory."""
    what, process = pipeline.name, None
    try:
        with common.DbCpuMeter(pipeline.db) as meter:  # no scan of the table in it
            started_at = time.time()
            process = pipeline.start()
            with common.PeakMemory(process.pid) as memory:
                wait_rows(pipeline, n, process, what, timeout_s=3600)
        wait_rows(pipeline, n, process, what, 600, pipeline.complete(n))
        if pipeline.stops_by_itself:
            process.wait(timeout=600)
    finally:
        if process is not None:
            kill_group(process, missing_ok=True)
    if (got := pipeline.delivery()) != (n, n):
        raise RuntimeError(f"{what} wrote {got[0]:,} rows ({n - got[1]:,} lost), expected {n:,}")
    # the first and last row's `ingested_at` (clock_timestamp() as each was written)
    ((first_at, last_at),) = fetch(
        pipeline.db,
        f"""SELECT extract(epoch FROM min(ingested_at)), extract(epoch FROM max(ingested_at))
            FROM {pipeline.table} WHERE kafka_topic = %s""",  # noqa: S608 (one of two constants)
        (pipeline.topic,),
    )
    seconds, to_first = float(last_at) - started_at, float(first_at) - started_at
    after = n / (seconds - to_first) if seconds > to_first else None  # none: one batch wrote all
    cpu, memory_mib = meter.reading.total_s / n * 1e6, round(memory.tree_peak_mib, 1)
    say(
        f"{what}: {n:,} rows in {seconds:.1f}s, {to_first:.1f}s to the first row, then "
        f"{after or 0:,.0f} rows/s; DB CPU {cpu:.1f} us/row"
    )
    figures = {"start_to_first_row_s": round(to_first, 3), "rows_per_s_after_first_row": after}
    return rate(n, seconds, **figures, db_cpu_us_per_row=cpu, peak_memory_mib=memory_mib)


def killed_half_way(pipeline: Pipeline, n: int) -> tuple[dict[str, int], subprocess.Popen]:
    """SIGKILL at half the rows, restart, catch up: rows lost, duplicated; the restart, running."""
    what, process = pipeline.name, pipeline.start()
    try:
        wait_rows(pipeline, n // 2, process, f"{what} (to be killed)", 3600, every_s=0.1)
    finally:
        kill_group(process, missing_ok=True)
    expected, at_kill = pipeline.rows_when_done(n), pipeline.progress()
    say(f"{what}: SIGKILL at {at_kill:,} rows; starting again")
    process = (pipeline.restart or pipeline.start)()
    try:
        done = pipeline.complete(n, expected)
        wait_rows(pipeline, expected, process, f"{what} (restarted)", 3600, done, every_s=0.2)
    except BaseException:
        kill_group(process, missing_ok=True)
        raise
    rows, distinct = pipeline.delivery()
    say(f"{what}: after the kill {n - distinct:,} rows lost, {rows - distinct:,} duplicated")
    return {"killed_at_rows": at_kill, "lost": n - distinct, "duplicated": rows - distinct}, process


def freshness(
    kafka: ClientConf, pipeline: Pipeline, process: subprocess.Popen, args: argparse.Namespace
) -> tuple[dict[str, float], dict]:
    """Each row's delay from send to write at `--rate` on the warm pipeline's topic: p50, p95."""
    topic, name, table = pipeline.fresh_topic, pipeline.name, pipeline.table
    before, warm = pipeline.progress(), int(args.rate * args.warm_up)
    storefront = map(generator.encode_event, generator.storefront_events(seed=7))
    common.load_topic(kafka, topic, warm, storefront, args.rate)
    wait_rows(pipeline, before + warm, process, f"{name} (warm-up)", 300, every_s=0.2)
    say(f"freshness, {name}: {args.rate:,.0f} msg/s for {args.duration:g}s")
    t_from = math.floor(time.time() * 1000) / 1000  # Kafka timestamps are whole milliseconds
    measured = int(args.rate * args.duration)
    storefront = map(generator.encode_event, generator.storefront_events(seed=7))
    common.load_topic(kafka, topic, measured, storefront, args.rate)
    window = f"FROM {table} WHERE kafka_topic = %s AND event_time >= to_timestamp(%s)"

    def visible() -> bool:  # a Citus worker counts its rows at PREPARE, before COMMIT PREPARED
        return fetch(pipeline.db, f"SELECT count(*) {window}", (topic, t_from))[0][0] >= measured

    total = before + warm + measured
    wait_rows(pipeline, total, process, name, 300, visible, every_s=0.2, check_every_s=0.5)
    # per row, send to write: its Kafka timestamp (`event_time`) to `ingested_at`
    delay = f"SELECT extract(epoch FROM ingested_at - event_time) {window}"  # noqa: S608
    delays = [float(d) for (d,) in fetch(pipeline.db, delay, (topic, t_from))]
    p50, p95 = round(percentile(delays, 50), 3), round(percentile(delays, 95), 3)
    say(f"freshness, {name}: p50 / p95 {p50:.2f} / {p95:.2f}s")
    figures = {"rows": len(delays), "p50_s": p50, "p95_s": p95}
    return figures, written_rows(pipeline.db, table, topic, since=t_from)


def create_peer_table(db: ConnectionParams) -> dict[str, Any]:
    """`peer_events` shaped as `events`, both stamping `ingested_at` per row; both shapes."""
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
            f"SELECT create_distributed_table('{PEER_TABLE}', 'customer_id', "
            "colocate_with => 'events')",
        )
    tables = {table: table_shape(db, table) for table in TABLES.values()}
    if tables["events"] != tables[PEER_TABLE]:
        raise RuntimeError(f"{PEER_TABLE} is not shaped as events: {tables}")
    say(f"{PEER_TABLE} shaped as events: {json.dumps(tables['events'])}")
    return tables


def table_shape(db: ConnectionParams, table: str) -> dict[str, Any]:
    """What makes a table cost what it costs to write, names aside (on Citus, distribution too)."""
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


def message_bytes(n: int) -> dict[str, float]:
    """Mean bytes of the messages both read, and with the schema envelope Connect once needed."""
    events = itertools.islice(generator.lab_uniform_events(1), min(n, 10_000))
    sample = [generator.encode_event(e) for e in events]
    plain = sum(map(len, sample)) / len(sample)
    envelope = len(json.dumps({"schema": LAB_SCHEMA, "payload": None}, separators=(",", ":")))
    return {"mean": round(plain, 1), "with_an_envelope": round(plain + envelope - 4, 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    n, kafka = args.messages, args.kafka
    work = Path(tempfile.mkdtemp(prefix="bench-peer-"))  # logs and properties, kept to read
    say(f"logs and settings of every run in {work}")
    results: dict[str, Any] = {"messages": n, "message_bytes": message_bytes(n)}
    results["first_batch_max_offsets"] = args.cfg.kafka.first_batch_max_offsets
    with (
        fresh_topic(kafka, "bench-peer", args.partitions) as topic,
        fresh_topic(kafka, "bench-peer-ours-f", args.partitions) as ours_fresh,
        fresh_topic(kafka, "bench-peer-connect-f", args.partitions) as peer_fresh,
        scratch_db(args.secrets, "bench_peer") as db,
        ExitStack() as polls,
    ):
        results["topics"] = {"ours": topic, "peer": topic}  # one topic, read by both
        results["load_msg_per_s"] = common.load_topic(kafka, topic, n)
        results["tables"] = create_peer_table(db)

        def peer(phase: str, *topics: str) -> ConnectWorker:
            bootstrap = str(kafka["bootstrap.servers"])
            return ConnectWorker(
                work / phase, bootstrap, topics, db, args.partitions, args.batch_size
            )

        def ours(fresh: str = "") -> Pipeline:
            return ours_pipeline(args, db, work / "ingest.log", topic, polls, fresh)

        def both_wrote(phase: str) -> dict:
            ours_rows, peer_rows = (written_rows(db, table, topic) for table in TABLES.values())
            return same_rows(phase.replace("_", " "), n, ours_rows, peer_rows)

        first = peer("throughput", topic)
        results["peer_settings"] = {
            "connector": first.connector_settings() | {"connection.url": "(the scratch database)"},
            "worker": first.worker_settings(),
            "release": CONNECT_RELEASE,
        }
        say(f"peer settings: {json.dumps(results['peer_settings']['connector'])}")
        results["ours"] = throughput(ours(), n)
        results["peer"] = throughput(peer_pipeline(first, kafka, polls), n)
        same = {"throughput": both_wrote("throughput")}
        # a SIGKILL half-way, both at once, on empty tables from an empty checkpoint / consumer
        # group (the restarted worker has the same name: it resumes its group). Each restart
        # keeps running and serves the freshness run, warm: a JVM's start is not freshness
        common.truncate(db, "events", PEER_TABLE, "clickstream_ingest_ledger")
        pipelines = {
            "ours": ours(ours_fresh),
            "peer": peer_pipeline(peer("kill", topic, peer_fresh), kafka, polls),
        }
        processes: list[subprocess.Popen] = []
        try:
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                killed = {k: pool.submit(killed_half_way, p, n) for k, p in pipelines.items()}
            # each restarted process is known (to be killed) before one's error is raised
            processes += [f.result()[1] for f in killed.values() if f.exception() is None]
            for name, future in killed.items():
                results[name].update(future.result()[0])
            same["after_kill"] = both_wrote("after_kill")
            if same["after_kill"]["ours"]["checksum"] != same["throughput"]["ours"]["checksum"]:
                raise RuntimeError("the rows after the kill are not those of the first run")
            results["freshness"] = {"rate_msg_per_s": args.rate, "seconds": args.duration}
            written = {}
            for (name, pipeline), process in zip(pipelines.items(), processes, strict=True):
                # ours while the peer idles; the peer once ours is gone
                fresh, written[name] = freshness(kafka, pipeline, process, args)
                results["freshness"][name] = fresh
                kill_group(process, missing_ok=True)
            expected = int(args.rate * args.duration)
            ours_rows, peer_rows = written["ours"], written["peer"]
            same["freshness"] = same_rows("freshness", expected, ours_rows, peer_rows, copies=True)
        finally:
            for process in processes:
                kill_group(process, missing_ok=True)
        results["same_rows"] = same
    for name in TABLES:
        results[f"{name}_lost"] = results[name]["lost"]
        results[f"{name}_duplicated"] = results[name]["duplicated"]
    ratio = results["ours"]["rows_per_s"] / results["peer"]["rows_per_s"]
    results["ours_over_peer_rows_per_s"] = ratio
    results["ours_over_peer_first_row_s"] = (
        results["ours"]["start_to_first_row_s"] / results["peer"]["start_to_first_row_s"]
    )
    say(f"ours over the peer: {ratio:.2f}x rows/s; the same rows in each phase")
    return results


def targets(f: dict[str, Any]) -> list[Target]:
    ours, ratio = f["ours"]["start_to_first_row_s"], f["ours_over_peer_first_row_s"]
    return [
        Target("exactly_once", f["ours_lost"] + f["ours_duplicated"], "<=", 0, "exactly once"),
        Target("rows_per_s_ge_2x_peer", f["ours_over_peer_rows_per_s"], ">=", 2, ">= 2x"),
        Target("first_row_le_5s", ours, "<=", 5, "<= 5 s"),
        Target("first_row_le_peer", ratio, "<=", 1, "no later than the peer"),
    ]


SCENARIO = Scenario(
    "peer_connect",
    __doc__ or "",
    run,
    # --batch-size: the peer's batch.size; --rate, --duration, --warm-up: of the freshness run
    flags={
        "messages": 2_000_000,
        "partitions": 4,
        "batch_size": 5000,
        "max_offsets_per_trigger": 250_000,
        "rate": 2000.0,
        "duration": 60.0,
        "warm_up": 10.0,
    },
    quick={
        "messages": 10_000,
        "max_offsets_per_trigger": 2_500,
        "batch_size": 2_000,
        "duration": 1.0,
        "warm_up": 0.5,
    },
    targets=targets,
    rows=(
        f"end to end, {{messages:,}} lab messages: ours vs {PEER}"
        " | ours {ours[rows_per_s]:,.0f} rows/s, {ours[db_cpu_us_per_row]:.1f} us DB CPU/row,"
        " {ours[peak_memory_mib]:,.0f} MiB | peer {peer[rows_per_s]:,.0f} rows/s,"
        " {peer[db_cpu_us_per_row]:.1f} us/row, {peer[peak_memory_mib]:,.0f} MiB"
        " | {ours_over_peer_rows_per_s:.2f}x | {targets:rows_per_s_ge_2x_peer}",
        "start to the first row (the first batch: {first_batch})"
        " | ours {ours[start_to_first_row_s]:.2f} s | peer {peer[start_to_first_row_s]:.2f} s"
        " | {ours_over_peer_first_row_s:.2f}x | {targets:first_row_le_5s; first_row_le_peer}",
        "SIGKILL half-way, then a restart: rows lost / duplicated"
        " | ours {ours_lost:,} / {ours_duplicated:,} | peer {peer_lost:,} / {peer_duplicated:,}"
        " | | {targets:exactly_once}",
        "freshness at {freshness[rate_msg_per_s]:,.0f} msg/s, send to row written, p50 / p95"
        " | ours {freshness[ours][p50_s]:.2f} / {freshness[ours][p95_s]:.2f} s"
        " | peer {freshness[peer][p50_s]:.2f} / {freshness[peer][p95_s]:.2f} s",
    ),
    derived=lambda f: {
        "first_batch": f"{n:,} messages" if (n := f.get("first_batch_max_offsets")) else "whole",
    },
    on_both=True,
    headline=f"vs {PEER}, {{messages:M}} messages"
    " | {ours[rows_per_s]:,.0f} rows/s, first row {ours[start_to_first_row_s]:.1f} s; after a"
    " SIGKILL {ours_lost:,} lost, {ours_duplicated:,} duplicated | {peer[rows_per_s]:,.0f}"
    " rows/s, first row {peer[start_to_first_row_s]:.1f} s; {peer_lost:,} lost,"
    " {peer_duplicated:,} duplicated | {ours_over_peer_rows_per_s:.2f}x",
    on_citus="{ours_over_peer_rows_per_s:.2f}x",
)

if __name__ == "__main__":
    SCENARIO.main()
