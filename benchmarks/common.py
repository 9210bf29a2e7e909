"""What the benchmarks measure with (database server CPU, a process tree's CPU and memory, by
psutil; `psql \\copy`) and what several do: load or read a topic, poll, start a job."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import psutil
import psycopg2.extensions
from pyspark.sql import DataFrame, SparkSession

from benchmarks.harness import ROOT, say
from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.secrets import Secrets, env_variable_name
from clickstream_pipeline.ingest.source import kafka_read_options
from clickstream_pipeline.traffic.generator import encode_event, lab_uniform_events
from clickstream_pipeline.traffic.producer import ClientConf, SendOptions, send_messages
from clickstream_pipeline.warehouse.database import ConnectionParams, connect, fetch
from devkit.db import citus_workers
from devkit.stack import STACK_SECRETS

# --- processes: CPU and memory, read with psutil ---------------------------------------------


class Sampler:
    """`sample()` on entering, every `interval_s` on a daemon thread, and on leaving."""

    interval_s: float

    def sample(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def postmaster_pids(params: ConnectionParams) -> dict[str, int]:
    """host:port -> postmaster pid of each server behind `params`, which must run here."""
    found = {}
    for node in (params, *citus_workers(params)):
        with contextlib.closing(connect(node)) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            try:
                postmaster = psutil.Process(cur.fetchone()[0]).parent()
                program = postmaster.cmdline()[0].split(" ", 1)[0] if postmaster else ""
            except (psutil.Error, IndexError):
                postmaster, program = None, ""
            if postmaster is None or postmaster.pid <= 1 or not program.endswith("postgres"):
                raise RuntimeError(
                    f"the database server at {node.host}:{node.port} does not run on this "
                    "machine (its backend is not a local process): its CPU cannot be measured"
                )
            found[f"{node.host}:{node.port}"] = postmaster.pid
    return found


def children(pid: int) -> list[int]:
    """A process's children from /proc (psutil's `children()` reads every process: 4 ms a call)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_s(process: psutil.Process) -> float:
    """A process's own CPU seconds, user and system."""
    times = process.cpu_times()
    return times.user + times.system


@dataclass
class CpuReading:
    total_s: float  # every child of the postmaster, live and reaped (the server's own count)
    own_s: float  # the benchmark database's backends, the shared writers, and unsampled backends
    foreign_s: float  # backends of other databases (other people's work on the same server)


@dataclass
class DbCpuMeter(Sampler):
    """Server CPU over a run, summed over every server behind the database (on Citus the
    coordinator and each worker): postmaster children's user+system, live and reaped. Sampled
    every 50 ms, each backend's CPU is attributed by its process title, so work of other
    databases on the same servers is told apart (`own_s`, `foreign_s`)."""

    db: ConnectionParams
    interval_s: float = 0.05
    servers: dict[str, int] = field(default_factory=dict)
    _start_total: float = 0.0
    _first: bool = True
    _seen: dict[int, list[Any]] = field(default_factory=dict)  # pid: process, title, first, last

    def _total(self) -> float:
        seconds = 0.0
        for pm in self.servers.values():
            times = psutil.Process(pm).cpu_times()
            seconds += times.children_user + times.children_system
            for child in children(pm):
                with contextlib.suppress(psutil.Error):
                    seen = self._seen.get(child)
                    seconds += cpu_s(seen[0] if seen else psutil.Process(child))
        return seconds

    def sample(self) -> None:
        first, self._first = self._first, False
        for pid in (child for pm in self.servers.values() for child in children(pm)):
            try:
                seen = self._seen.get(pid)
                process = seen[0] if seen else psutil.Process(pid)
                seconds = cpu_s(process)
                if seen is None:
                    title = " ".join(process.cmdline()).strip()
                    seen = self._seen[pid] = [process, title, seconds if first else 0.0, 0.0]
            except psutil.Error:
                continue
            seen[3] = seconds

    def __enter__(self) -> Self:
        self.servers = postmaster_pids(self.db)
        super().__enter__()
        self._start_total = self._total()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__()
        own = foreign = 0.0
        for _, title, first, last in self._seen.values():
            parts = title.split()
            is_backend = len(parts) >= 4 and parts[0] == "postgres:" and "(" in title
            if f" {self.db.dbname} " in f" {title} " or not is_backend:
                own += last - first  # this database's backends, checkpointer, walwriter...
            else:
                foreign += last - first
        total = self._total() - self._start_total
        # A backend born and gone between two samples is only in the total: by elimination ours
        # (a benchmark's scratch database), so it counts as own rather than vanishing.
        own += max(total - own - foreign, 0.0)
        if total <= 0 or own <= 0:
            raise RuntimeError(
                f"measured no CPU of database {self.db.dbname} on the servers "
                f"{', '.join(f'{k} (pid {v})' for k, v in self.servers.items())}: "
                "the meter is not watching the server that did the work"
            )
        self.reading = CpuReading(total, own, foreign)


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its descendants, live and reaped (in their parent's count)."""
    seconds = 0.0
    for member in _tree(pid):
        with contextlib.suppress(psutil.Error):
            times = member.cpu_times()
            seconds += times.user + times.system + times.children_user + times.children_system
    return seconds


@dataclass
class PeakMemory(Sampler):
    """Peak resident MiB of a process tree: the root's, the tree's, each `marked` descendant's."""

    root: int
    marked: str = ""
    interval_s: float = 0.5
    root_peak_mib: float = 0.0
    tree_peak_mib: float = 0.0
    marked_peak_mib: dict[int, float] = field(default_factory=dict)
    marked_total_peak_mib: float = 0.0

    def sample(self) -> None:
        try:
            members = _tree(self.root)
        except psutil.Error:  # the root is gone
            return
        tree = marked = 0.0
        for member in members:
            try:
                mib = member.memory_info().rss / (1 << 20)
                is_root = member.pid == self.root
                is_marked = (
                    self.marked and not is_root and self.marked in " ".join(member.cmdline())
                )
            except psutil.Error:  # gone, or a zombie
                continue
            tree += mib
            if is_root:
                self.root_peak_mib = max(self.root_peak_mib, mib)
            if is_marked:
                self.marked_peak_mib[member.pid] = max(self.marked_peak_mib.get(member.pid, 0), mib)
                marked += mib
        self.tree_peak_mib = max(self.tree_peak_mib, tree)
        self.marked_total_peak_mib = max(self.marked_total_peak_mib, marked)


def psql_copy(params: ConnectionParams, columns: tuple[str, ...], files: list[Path]) -> float:
    """`psql \\copy` of each file into events, one psql per file, all at once: wall seconds."""
    env = {**os.environ, **params.libpq_env()}
    copy = "\\copy events ({}) from '{}' with (format csv)"
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"]
    started = time.perf_counter()
    procs = [subprocess.Popen([*psql, copy.format(", ".join(columns), f)], env=env) for f in files]
    if any(codes := [p.wait() for p in procs]):
        raise RuntimeError(f"psql \\copy failed: exit codes {codes}")
    return time.perf_counter() - started


class KeptQuery(contextlib.AbstractContextManager):
    """One row asked again and again on a kept connection: a poll costs a query, not a login."""

    def __init__(self, db: ConnectionParams, text: str, args: tuple[Any, ...] = ()) -> None:
        self.db, self.text, self.args = db, text, args
        self.conn: psycopg2.extensions.connection | None = None

    def __call__(self) -> tuple[Any, ...]:
        if (conn := self.conn) is None:
            conn = self.conn = connect(self.db, "bench-progress")
            conn.autocommit = True  # a fresh snapshot each time
        with conn.cursor() as cur:
            cur.execute(self.text, self.args or None)
            row: tuple[Any, ...] = cur.fetchone()
        return row

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()


@dataclass
class Watch(Sampler):
    """Each change of a number asked every `interval_s` on a kept connection, and when seen."""

    db: ConnectionParams
    text: str
    interval_s: float = 0.1
    changes: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ask = KeptQuery(self.db, self.text)  # connects on its first question

    def sample(self) -> None:
        (value,), now = self.ask(), time.time()
        if value is not None and (not self.changes or value != self.changes[-1][1]):
            self.changes.append((now, int(value)))

    def __exit__(self, *exc: object) -> None:
        super().__exit__()
        self.ask.__exit__()


# TRUNCATE of the tables' leaf partitions that hold rows: the same empty tables as a TRUNCATE of
# them all, without the new files of each of `events`' hundreds of empty partitions (a second a
# TRUNCATE on plain PostgreSQL, timed by some benchmarks)
TRUNCATE_HELD = """DO $$
DECLARE
    leaf regclass;
    held boolean;
    emptied text[] := '{}';
BEGIN
    FOR leaf IN
        SELECT coalesce(t.relid, r.rel)  -- a table neither partitioned nor a partition: itself
        FROM unnest(%s::regclass[]) AS r (rel) LEFT JOIN pg_partition_tree(r.rel) AS t ON true
        WHERE coalesce(t.isleaf, true)
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %%s)', leaf) INTO held;
        IF held THEN
            emptied := emptied || leaf::text;
        END IF;
    END LOOP;
    IF cardinality(emptied) > 0 THEN
        EXECUTE 'TRUNCATE ' || array_to_string(emptied, ', ');
    END IF;
END $$"""


def truncate(db: ConnectionParams, *tables: str) -> None:
    """Empty `tables` (partitioned or not) as TRUNCATE does, by the partitions holding rows."""
    with contextlib.closing(connect(db)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(TRUNCATE_HELD, (list(tables),))


def expect_rows(db: ConnectionParams, n: int, what: str) -> None:
    """`what` wrote `n` rows into `events`, or the run fails."""
    if (written := fetch(db, "SELECT count(*) FROM events")[0][0]) != n:
        raise RuntimeError(f"{what} wrote {written:,} rows into events, expected {n:,}")


# --- Kafka, the ingest and its jobs ------------------------------------------------------------


def load_topic(
    kafka: ClientConf, topic: str, n: int, values: Iterable[bytes] = (), rate: float = 0
) -> float:
    """N keyless messages of `values` (lab-uniform) sent at `rate`/s (0: at once); msg/s acked."""
    values = values or map(encode_event, lab_uniform_events(1))
    messages = [(None, value) for value in itertools.islice(values, n)]
    stats = send_messages(kafka, iter(messages), SendOptions(topic, rate, count=n, progress=False))
    if not stats.ok or stats.acked != n:
        raise RuntimeError(stats.summary(topic))
    say(stats.summary(topic))
    return stats.rate


def read_topic(
    spark: SparkSession, cfg: Config, secrets: Secrets, topic: str, **options: str
) -> DataFrame:
    """The whole topic, read in one batch with the ingest job's Kafka options (and `options`)."""
    settings = kafka_read_options(cfg.kafka, secrets)
    for streaming_only in ("maxOffsetsPerTrigger", "subscribePattern"):
        settings.pop(streaming_only, None)
    settings |= {"subscribe": topic, "startingOffsets": "earliest", "endingOffsets": "latest"}
    return spark.read.format("kafka").options(**(settings | options)).load()


def ingest_config(cfg: Config, topic: str, query_name: str, **ingest: Any) -> Config:
    """The job's config reading `topic` as `query_name` (with `ingest` settings)."""
    most = ingest.pop("max_offsets_per_trigger", cfg.kafka.max_offsets_per_trigger)
    kafka = cfg.kafka.model_copy(update={"topics": [topic], "max_offsets_per_trigger": most})
    update = {"query_name": query_name, **ingest}
    return cfg.model_copy(update={"kafka": kafka, "ingest": cfg.ingest.model_copy(update=update)})


def delete_checkpoint(spark: SparkSession, location: str) -> None:
    """Remove the query's checkpoint (s3a:// or local) through Hadoop's file system."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(location)
    path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)


def jvm_pid(spark: SparkSession) -> int:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return int(jvm.java.lang.ProcessHandle.current().pid())


def start_job(
    job: str, cfg: Config, secrets: Secrets, log: Path, *flags: str, **settings: Any
) -> subprocess.Popen:
    """`clickstream-<job>` in a process group, `secrets` in its environment, `settings` --set."""
    env = dict(os.environ)
    for key in STACK_SECRETS:
        if (value := secrets.get(key)) is not None:
            env[env_variable_name(cfg.secrets.name_of(key))] = value.get_secret_value()
    sets = [f"--set={k.replace('__', '.')}={v}" for k, v in settings.items()]
    module = f"clickstream_pipeline.jobs.{job}"
    command = [sys.executable, "-m", module, "--env", cfg.env, "--set=secrets.backend=env"]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*command, *sets, *flags],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
