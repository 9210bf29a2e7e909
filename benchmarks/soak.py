"""A soak (`make soak`, `SOAK_MINUTES`): the stack at a sustained rate for `--minutes` with a
fault schedule, then a reconciliation.

One topic feeds an ingest job per server (plain PostgreSQL, and Citus where it runs here), each
restarted by a supervisor loop whenever it exits. Faults, in turn: a job SIGKILLed, Kafka,
PostgreSQL, one Citus worker and the object store stopped and started; the dashboard serves
viewers throughout. Event times spread over the model's `max_past` (some beyond it: dead
letters), so they fall into many partitions; retention is short, so partitions are created and
dropped while it runs (pg_cron's maintenance and retention run every minute, as in a deployment).

At the end every message is in `events` or the dead letters once, or expired with its
partition; every rollup equals SQL over the raw events it covers; and it prints memory slopes,
lag over time, checkpoint and bookkeeping sizes, and the faults survived."""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psutil
from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.common import start_job
from benchmarks.harness import ROOT, Scenario, Target, say, servers
from benchmarks.viewers import refresh_request
from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.model import EventModel, load_model
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.core.spark import build_spark
from clickstream_pipeline.ingest import dead_letters
from clickstream_pipeline.traffic.producer import create_topic, delete_topic
from clickstream_pipeline.warehouse.database import ConnectionParams, fetch
from clickstream_pipeline.warehouse.rollup_runner import aggregate
from clickstream_pipeline.warehouse.rollups import bucket_sql, q
from devkit.db import bootstrap, create_database, drop_database
from devkit.ports import free_port
from devkit.processes import kill_group
from devkit.stack import secrets_for
from devkit.waits import wait_until

STACK = ROOT / "scripts" / "stack"
PARTITIONS = 4
# the lab's model with short horizons: events up to 10 minutes late, raw partitions kept 70
# minutes (the shortest its hourly rollups allow), rollups 2 hours, bookkeeping a minute
# (beyond the 100 newest batches)
MAX_PAST = "10m"
RETENTION = '[retention]\nevents = "70m"\nrollups = "2h"\nbookkeeping = "1m"\n'
SHARES = {"late": 0.05, "too_old": 0.005, "malformed": 0.005}  # the rest: "now"
HOLD_S = 5  # how long a stopped service stays down
QUIET = {"log_level": 2}  # librdkafka: no "connection refused" lines while Kafka restarts
MAINTENANCE = (  # what pg_cron runs every minute in a deployment (not in scratch databases)
    "SELECT partman.run_maintenance('public.events', p_analyze := false)",
    "SELECT count(*) FROM clickstream_apply_retention()",
)
KEPT_FROM = """SELECT min(substring(pg_get_expr(c.relpartbound, c.oid)
                                   FROM $$FROM \\('([^']+)'\\)$$)::timestamptz)
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'public.events'::regclass AND c.relname <> 'events_default'"""
SIZES = {
    "ledger_rows": "SELECT count(*) FROM clickstream_ingest_ledger",
    "batch_rows": "SELECT count(*) FROM clickstream_ingest_batches",
    "freshness_rows": "SELECT count(*) FROM clickstream_ingest_tenant_freshness",
}
PARTITION_NAMES = (
    "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'events'::regclass"
)
# the last offset each partition's batches read (dead letters too), newest batches kept
LAG = """SELECT split_part(o.key, '/', 2)::int, max((o.value ->> 1)::bigint)
         FROM clickstream_ingest_batches, jsonb_each(offsets) AS o
         WHERE query_name = %s GROUP BY 1"""
ID_IN_RAW = re.compile(rb'(?:"event_id": |soak-)(\d+)')


@dataclass
class Server:
    """One server's soak: its scratch database, its supervised job and what was sampled."""

    name: str
    cfg: Config
    secrets: Secrets
    db: ConnectionParams
    query_name: str
    log: Path
    job: subprocess.Popen | None = None
    starts: list[float] = field(default_factory=list)  # when each run of the job began
    exits: list[tuple[float, int | None, bool]] = field(default_factory=list)  # (t, code, killed)
    killing: bool = False
    memory: list[tuple[float, int, float, float]] = field(default_factory=list)  # t, run, MiB
    lag: list[tuple[float, int]] = field(default_factory=list)
    sizes: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    partitions: list[set[str]] = field(default_factory=list)  # the first, every one seen since

    @property
    def lake_root(self) -> str:
        """Its own dead letters: Delta on S3 takes one writing driver per table."""
        return f"{self.cfg.storage.lake_root.rstrip('/')}/{self.query_name}"


@dataclass
class Sent:
    """What the producer had acknowledged: each message's id with its kind and event time."""

    kinds: dict[int, str] = field(default_factory=dict)
    times: dict[int, float] = field(default_factory=dict)
    failed: int = 0


class Soak:
    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args, self.folder, self.model_path = args, folder, model_file(folder)
        self.model: EventModel = load_model(str(self.model_path))
        self.t0 = time.monotonic()
        self.stop = threading.Event()  # the run's end: producer, faults and samplers stop
        self.done = threading.Event()  # the jobs' end: supervisors stop restarting
        self.sent = Sent()
        self.faults: list[dict[str, Any]] = []
        self.viewers: Counter[str] = Counter()
        self.topic = f"soak-{uuid.uuid4().hex[:8]}"
        self.servers: list[Server] = []

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    # --- the producer --------------------------------------------------------------------

    def produce(self, kafka: dict[str, Any]) -> None:
        """`--rate` messages a second, each with an id; delivery reports say which arrived."""
        rng, next_id = random.Random(5), 1
        producer = Producer({**kafka, **QUIET, "enable.idempotence": True, "linger.ms": 20})
        max_past_s = self.model.time.max_past_s

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                self.sent.failed += 1
                self.sent.kinds.pop(int(msg.key()), None)

        tick = time.monotonic()
        while not self.stop.is_set():
            for _ in range(max(1, self.args.rate // 10)):
                draw, now = rng.random(), time.time()
                kind = next((k for k, share in _cumulative(SHARES) if draw < share), "now")
                event_time = {
                    "now": now - rng.uniform(0, 2),
                    "late": now - rng.uniform(0, max_past_s - 180),
                    "too_old": now - max_past_s - rng.uniform(300, 600),
                    "malformed": now,
                }[kind]
                event = {
                    "event_id": next_id,
                    "customer_id": min(int(rng.paretovariate(1.2)), 500),
                    "event_type": rng.choice(["click", "buy", "scroll", "download"]),
                    "country": rng.choice(["India", "France", "Chile", "Japan", "Kenya"]),
                    "browser": rng.choice(["chrome", "firefox", "safari"]),
                    "device_id": rng.randint(1, 5000),
                    "session_id": rng.randint(1, 50000),
                    "event_time": int(event_time * 1000),
                }
                value = (
                    f"{{broken soak-{next_id}".encode()
                    if kind == "malformed"
                    else json.dumps(event).encode()
                )
                self.sent.kinds[next_id], self.sent.times[next_id] = kind, event_time
                producer.produce(self.topic, value, str(next_id).encode(), on_delivery=delivered)
                next_id += 1
            producer.poll(0)
            tick += 0.1
            time.sleep(max(0.0, tick - time.monotonic()))
        producer.flush(120)

    # --- the jobs and their supervisor -----------------------------------------------------

    def supervise(self, server: Server) -> None:
        """Start the job; whenever it exits, start it again (until the run's end)."""
        while not self.done.is_set():
            server.job = start_job(
                "ingest",
                server.cfg,
                secrets_for(server.secrets, server.db),
                server.log,
                kafka__topics=f'["{self.topic}"]',
                ingest__query_name=server.query_name,
                ingest__model=str(self.model_path),
                ingest__trigger_interval="1 second",
                storage__lake_root=server.lake_root,
            )
            server.starts.append(self.now())
            code = server.job.wait()
            server.exits.append((self.now(), code, server.killing))
            if not server.killing and not self.done.is_set():
                say(f"{server.name}: the job exited with {code} unasked: restarting it")
            server.killing = False

    # --- faults ---------------------------------------------------------------------------

    def fault_schedule(self) -> list[tuple[str, Any]]:
        kinds: list[tuple[str, Any]] = []
        for server in self.servers:
            kinds.append((f"SIGKILL of the {server.name} job", server))
        kinds += [("Kafka restart", "kafka.sh"), ("PostgreSQL restart", "postgres.sh")]
        if any(s.name == "citus" for s in self.servers):
            kinds.append(("Citus worker restart", ("citus.sh", "worker1")))
        kinds.append(("object store restart", "objectstore.sh"))
        return kinds

    def inject_faults(self) -> None:
        schedule, end = self.fault_schedule(), self.args.minutes * 60 * 0.8
        at = 60.0
        for number in range(10_000):
            if self.stop.wait(max(0.0, at - (time.monotonic() - self.t0))) or at > end:
                return
            name, what = schedule[number % len(schedule)]
            started = time.monotonic()
            if isinstance(what, Server):
                what.killing = True
                if what.job is not None:
                    kill_group(what.job, missing_ok=True)
            else:
                script, *node = (what, *()) if isinstance(what, str) else what
                with (self.folder / "faults.log").open("ab") as out:
                    for action, timeout in (("stop", 120), ("start", 240)):
                        command = [str(STACK / script), action, *(node if action == "stop" else ())]
                        subprocess.run(command, stdout=out, stderr=out, check=True, timeout=timeout)
                        time.sleep(HOLD_S if action == "stop" else 0)
            took = time.monotonic() - started
            self.faults.append({"at_s": self.now(), "fault": name, "seconds": round(took, 1)})
            say(f"fault {len(self.faults)}: {name} ({took:.0f} s)")
            at = max(at + self.args.fault_every, time.monotonic() - self.t0 + 10)

    # --- samplers -------------------------------------------------------------------------

    def sample(self, kafka: dict[str, Any]) -> None:
        """Every 10 s: each job's memory and lag; every minute: maintenance and sizes."""
        watermarks = Consumer({**kafka, **QUIET, "group.id": "soak-watermarks"})
        s3 = _s3(self.servers[0])
        rounds = 0
        while not self.stop.wait(10):
            rounds += 1
            for server in self.servers:
                server.memory += _memory(server, self.now())
                behind = _try(lambda s=server: _behind(watermarks, s, self.topic))
                if behind is not None:
                    server.lag.append((self.now(), behind))
                if rounds % 6 == 0:
                    _try(lambda s=server: _maintain(s.db))
                    sizes = _try(lambda s=server: _sizes(s.db))
                    objects = _try(lambda s=server: _checkpoint_objects(s3, s))
                    if sizes is not None and objects is not None:
                        server.sizes.append((self.now(), {**sizes, **objects}))
            if rounds % 30 == 0:
                say(self.progress())
        watermarks.close()

    def progress(self) -> str:
        parts = [f"{len(self.sent.kinds):,} sent, {len(self.faults)} faults"]
        for s in self.servers:
            lag = s.lag[-1][1] if s.lag else "?"
            parts.append(f"{s.name}: {len(s.starts)} runs, {lag} behind")
        return "; ".join(parts)

    def view(self, url: str) -> None:
        """Viewers: a refresh of the whole page every second, answered or not."""
        with urllib.request.urlopen(url + "_dash-dependencies", timeout=30) as answer:
            dependencies = json.load(answer)
        tick = 0
        while not self.stop.wait(1):
            tick += 1
            body = json.dumps(refresh_request(dependencies, "all", tick)).encode()
            request = urllib.request.Request(
                url + "_dash-update-component", body, {"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    text = answer.read().decode()
                ok = "database unavailable" not in text
                self.viewers["answered" if ok else "database unavailable"] += 1
            except OSError as exc:
                self.viewers[type(exc).__name__] += 1

    # --- the end --------------------------------------------------------------------------

    def finish(self, servers_seen: list[Server]) -> None:
        """Wait until every job has read the whole topic, then stop them gracefully."""
        sent = len(self.sent.kinds) + self.sent.failed
        watermarks = Consumer({**self.args.kafka, **QUIET, "group.id": "soak-watermarks"})
        for server in servers_seen:

            def caught_up(server: Server = server) -> bool:
                return _try(lambda: _behind(watermarks, server, self.topic)) == 0

            wait_until(
                caught_up, 600, f"the {server.name} job to read all {sent:,} messages", every_s=2
            )
        watermarks.close()
        self.done.set()
        for server in servers_seen:
            if server.job is not None:
                server.job.terminate()
                server.job.wait(timeout=120)

    def reconcile(self, server: Server, letters: dict[int, int]) -> dict[str, Any]:
        """Every acknowledged message once in events or the dead letters, or expired."""
        aggregate(server.db.psycopg_kwargs("soak", 30))
        _maintain(server.db)
        (kept_from,) = fetch(server.db, KEPT_FROM)[0]
        first, seen, last = *server.partitions, _partitions(server.db)
        stored = dict(
            fetch(
                server.db,
                "SELECT source_event_id, count(*) FROM events WHERE kafka_topic = %s GROUP BY 1",
                (self.topic,),
            )
        )
        unknown = set(stored) - set(self.sent.kinds)
        return {
            "outcome": outcomes(self.sent, stored, letters, kept_from.timestamp()),
            "not_acknowledged_yet_stored": len(unknown),
            "raw_kept_from": kept_from.isoformat(),
            "partitions": {
                "at_start": len(first),
                "created": len((seen | last) - first),
                "dropped": len((first | seen) - last),
                "at_end": len(last),
            },
            "rollups": self.check_rollups(server, kept_from),
        }

    def check_rollups(self, server: Server, kept_from: Any) -> dict[str, Any]:
        """Each rollup of raw events against SQL over the raw events still kept: counts, sums,
        minima and maxima exact, distinct counts within HLL's error; buckets that began
        before the oldest raw partition are left out (their raw events partly expired)."""
        checked: dict[str, Any] = {}
        for table, spec in self.model.rollups.items():
            if spec.source != "events":
                continue
            dims = [q(d) for d in spec.dimensions]
            bucket = bucket_sql(spec, self.model.time.field)
            raw, rolled = [], []
            for name, m in spec.measures.items():
                column = "*" if m.kind == "count" else q(m.field or "")
                if m.kind in ("count", "sum", "min", "max"):
                    raw.append(f"{m.kind}({column})")
                    rolled.append(q(name))
                elif m.kind == "distinct":
                    raw.append(f"count(DISTINCT {column})")
                    rolled.append(f"round(hll_cardinality({q(name)}))")
            keys = ", ".join([*dims, "b"])
            exact_sql = (  # identifiers quoted by q()
                f"SELECT {', '.join([*dims, f'{bucket} AS b', *raw])} FROM events "  # noqa: S608
                f"WHERE {bucket} >= %s GROUP BY {keys} ORDER BY {keys}"
            )
            rolled_sql = (
                f"SELECT {', '.join([*dims, f'{q(spec.bucket)} AS b', *rolled])} "  # noqa: S608
                f"FROM {q(table)} WHERE {q(spec.bucket)} >= %s ORDER BY {keys}"
            )
            exact = fetch(server.db, exact_sql, (kept_from,))
            found = fetch(server.db, rolled_sql, (kept_from,))
            checked[table] = {"rows": len(exact), "mismatched": _mismatched(exact, found, spec)}
        return checked


def outcomes(sent: Sent, stored: dict[int, int], letters: dict[int, int], kept_from: float) -> dict:
    """How many acknowledged messages are in `events` (`stored`: id -> rows), in the dead
    letters, expired (absent, with an event time before the oldest raw partition), written
    twice, or lost."""
    found: Counter[str] = Counter()
    for event_id, kind in sent.kinds.items():
        copies = stored.get(event_id, 0) + letters.get(event_id, 0)
        if copies > 1:
            found["duplicated"] += 1
        elif copies == 1:
            found["in events" if event_id in stored else f"dead letter ({kind})"] += 1
        elif kind in ("now", "late") and sent.times[event_id] < kept_from:
            found["expired"] += 1
        else:
            found["lost"] += 1
    return dict(found)


def _cumulative(shares: dict[str, float]) -> list[tuple[str, float]]:
    total, out = 0.0, []
    for kind, share in shares.items():
        total += share
        out.append((kind, total))
    return out


def _try(read: Any) -> Any:
    """`read()`, or None while a service it needs is down."""
    try:
        return read()
    except Exception:  # psycopg2, Kafka, S3 or HTTP errors alike
        return None


def _behind(consumer: Consumer, server: Server, topic: str) -> int:
    """How many of the topic's messages the server's job has not committed yet."""
    ends = [
        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
        for p in range(PARTITIONS)
    ]
    read = dict(fetch(server.db, LAG, (server.query_name,)))
    return sum(end - read.get(p, -1) - 1 for p, end in enumerate(ends))


def _partitions(db: ConnectionParams) -> set[str]:
    return {name for (name,) in fetch(db, PARTITION_NAMES)}


def _sizes(db: ConnectionParams) -> dict[str, int]:
    return {key: fetch(db, text)[0][0] for key, text in SIZES.items()}


def _maintain(db: ConnectionParams) -> None:
    for statement in MAINTENANCE:
        fetch(db, statement)


def _memory(server: Server, now: float) -> list[tuple[float, int, float, float]]:
    """The job's JVM and its Python processes (driver and workers), resident MiB."""
    if server.job is None:
        return []
    try:
        tree = [psutil.Process(server.job.pid), *psutil.Process(server.job.pid).children(True)]
        jvm = sum(p.memory_info().rss for p in tree if p.name() == "java")
        python = sum(p.memory_info().rss for p in tree if p.name().startswith("python"))
    except psutil.Error:
        return []
    return [(now, len(server.starts), jvm / 2**20, python / 2**20)]


def _own_folder(root: str, server: Server) -> tuple[str, str]:
    """The bucket and prefix of the job's folder under `root` (its checkpoint, its lake)."""
    bucket, _, prefix = f"{root.split('://', 1)[1].rstrip('/')}/{server.query_name}/".partition("/")
    return bucket, prefix


def _checkpoint_objects(s3: Any, server: Server, delete: bool = False) -> dict[str, int]:
    """How many objects the job's checkpoint holds, and their bytes (`delete`: and delete them,
    and its lake's)."""
    if delete:
        _objects(s3, *_own_folder(server.cfg.storage.lake_root, server), delete)
    count, size = _objects(s3, *_own_folder(server.cfg.storage.checkpoint_root, server), delete)
    return {"checkpoint_objects": count, "checkpoint_bytes": size}


def _objects(s3: Any, bucket: str, prefix: str, delete: bool) -> tuple[int, int]:
    count = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        items = page.get("Contents", [])
        count, size = count + len(items), size + sum(item["Size"] for item in items)
        if delete and items:
            keys = [{"Key": item["Key"]} for item in items]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    return count, size


def _s3(server: Server) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.cfg.storage.s3_endpoint,
        aws_access_key_id=server.secrets["s3_access_key"].get_secret_value(),
        aws_secret_access_key=server.secrets["s3_secret_key"].get_secret_value(),
    )


def _mismatched(exact: list[tuple], found: list[tuple], spec: Any) -> int:
    """Rows that differ: keys or exact measures unequal, or a distinct count off by more than
    HLL's error (3%, at least 2)."""
    width = len(spec.dimensions) + 1
    kinds = [m.kind for m in spec.measures.values() if m.kind != "topn"]
    rolled = {tuple(r[:width]): r[width:] for r in found}
    bad = abs(len(rolled) - len(exact))
    for row in exact:
        have = rolled.get(tuple(row[:width]))
        if have is None:
            continue
        for kind, want, got in zip(kinds, row[width:], have, strict=True):
            tolerance = max(2, 0.03 * want) if kind == "distinct" else 0
            if got is None or abs(float(got) - float(want)) > tolerance:
                bad += 1
                break
    return bad


def slopes(server: Server) -> dict[str, float | None]:
    """The steepest memory growth of any run of the job long enough to tell (MiB an hour,
    least squares over its samples after its first two minutes)."""
    out: dict[str, float | None] = {"jvm_mib_per_h": None, "python_mib_per_h": None}
    for run in {r for _, r, _, _ in server.memory}:
        points = [(t, j, p) for t, r, j, p in server.memory if r == run]
        points = [x for x in points if x[0] - points[0][0] >= 120]
        if len(points) < 12:
            continue
        for key, index in (("jvm_mib_per_h", 1), ("python_mib_per_h", 2)):
            slope = _least_squares([x[0] for x in points], [x[index] for x in points]) * 3600
            out[key] = max(out[key] or slope, slope)
    return out


def _per_window(samples: list[tuple[float, int]], window_s: int) -> list[tuple[int, int]]:
    """The largest value in each `window_s` of the run (start in seconds, value)."""
    found: dict[int, int] = {}
    for t, value in samples:
        start = int(t // window_s * window_s)
        found[start] = max(found.get(start, value), value)
    return sorted(found.items())


def _least_squares(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def model_file(folder: Path) -> Path:
    """The lab's model with the soak's short horizons."""
    lab = (ROOT / "conf" / "models" / "lab.toml").read_text()
    head, rest = lab.split("[retention]", 1)
    assert 'max_past = "2d"' in head and "[" not in rest, "conf/models/lab.toml changed shape"
    path = folder / "soak_model.toml"
    path.write_text(head.replace('max_past = "2d"', f'max_past = "{MAX_PAST}"') + RETENTION)
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = ROOT / ".stack" / "soak"
    folder.mkdir(parents=True, exist_ok=True)
    soak = Soak(args, folder)
    create_topic(args.kafka, soak.topic, PARTITIONS)
    made: list[tuple[ConnectionParams, str]] = []
    dashboard = None
    try:
        for name, (cfg, secrets) in servers().items():
            params = ConnectionParams.from_jdbc_url(secrets["database"])
            db_name = f"soak_{uuid.uuid4().hex[:8]}"
            db = create_database(params, db_name)
            made.append((params, db_name))
            bootstrap(db, [str(soak.model_path)])
            log = folder / f"ingest-{name}.log"
            log.write_text("")
            server = Server(name, cfg, secrets, db, f"{soak.topic}-{name}", log)
            server.partitions = [_partitions(db), set()]
            soak.servers.append(server)
        say(
            f"soak: {args.minutes} min at {args.rate} msg/s into "
            f"{', '.join(s.name for s in soak.servers)}; logs in {folder.relative_to(ROOT)}"
        )
        watched = soak.servers[-1]  # the dashboard on Citus where it runs
        port = free_port()
        dashboard = start_job(
            "dashboard",
            watched.cfg,
            secrets_for(watched.secrets, watched.db),
            folder / "dashboard.log",
            f"--port={port}",
            ingest__model=str(soak.model_path),
        )
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: _try(lambda: urllib.request.urlopen(url, timeout=2)), 90, "dashboard")
        threads = [threading.Thread(target=soak.supervise, args=(s,)) for s in soak.servers]
        threads += [
            threading.Thread(target=soak.produce, args=(args.kafka,)),
            threading.Thread(target=soak.inject_faults),
            threading.Thread(target=soak.sample, args=(args.kafka,)),
            threading.Thread(target=soak.view, args=(url,)),
        ]
        for thread in threads:
            thread.daemon = True
            thread.start()
        soak.stop.wait(args.minutes * 60)
        soak.stop.set()
        for thread in threads[len(soak.servers) :]:
            thread.join(timeout=300)
        say(f"run over: {soak.progress()}; waiting for the jobs to read everything")
        soak.finish(soak.servers)
        spark = build_spark(soak.servers[0].cfg, soak.servers[0].secrets)
        letters: dict[str, Counter[int]] = {s.query_name: Counter() for s in soak.servers}
        try:
            for s in soak.servers:
                read = dead_letters.read(spark, f"{s.lake_root}/dead_letters")
                for (raw,) in read.select("raw_value").collect():
                    if (found := ID_IN_RAW.search(bytes(raw or b""))) is not None:
                        letters[s.query_name][int(found.group(1))] += 1
        finally:
            spark.stop()
        figures: dict[str, Any] = {
            "minutes": args.minutes,
            "rate": args.rate,
            "sent": len(soak.sent.kinds),
            "not_delivered": soak.sent.failed,
            "faults": soak.faults,
            "viewer_refreshes": dict(soak.viewers),
            "servers": {},
        }
        for s in soak.servers:
            killed = sum(1 for _, _, k in s.exits if k)
            figures["servers"][s.name] = {
                **soak.reconcile(s, letters[s.query_name]),
                "job_runs": len(s.starts),
                "sigkilled": killed,
                "exited_unasked": len(s.exits) - killed - 1,  # the last one was asked to stop
                "memory_slope": slopes(s),
                "memory_mib_last": s.memory[-1][2:] if s.memory else None,
                "lag_max_per_5_min": _per_window(s.lag, 300),
                "sizes": s.sizes[:: max(1, len(s.sizes) // 8)] + s.sizes[-1:],
            }
        return figures
    finally:
        soak.stop.set()
        soak.done.set()
        for s in soak.servers:
            if s.job is not None and s.job.poll() is None:
                kill_group(s.job, missing_ok=True)
        if dashboard is not None:
            kill_group(dashboard, missing_ok=True)
        _try(lambda: delete_topic(args.kafka, soak.topic))
        for s in soak.servers:
            _try(lambda s=s: _checkpoint_objects(_s3(s), s, delete=True))
        for params, name in made:
            _try(lambda p=params, n=name: drop_database(p, n))


def targets(f: dict[str, Any]) -> list[Target]:
    found: list[Target] = []
    for name, s in f["servers"].items():
        outcome = s["outcome"]
        found += [
            Target(f"{name}_none_lost", outcome.get("lost", 0), "<=", 0, f"{name}: none lost"),
            Target(f"{name}_none_twice", outcome.get("duplicated", 0), "<=", 0, "none twice"),
            Target(
                f"{name}_rollups_exact",
                sum(r["mismatched"] for r in s["rollups"].values()),
                "<=",
                0,
                f"{name}: rollups equal raw events",
            ),
        ]
        sizes = s["sizes"]
        if f["minutes"] >= 20 and len(sizes) >= 4:  # bounded: the end no larger than mid-run's
            half = sizes[len(sizes) // 2][1]
            for key in ("ledger_rows", "checkpoint_objects"):
                ratio = max(x[key] for _, x in sizes[len(sizes) // 2 :]) / max(half[key], 1)
                found.append(Target(f"{name}_{key}_bounded", ratio, "<=", 1.5, f"{key} bounded"))
    return found


def rows(f: dict[str, Any]) -> list[list[str]]:
    out = []
    for name, s in f["servers"].items():
        o = s["outcome"]
        slope = s["memory_slope"]
        last = s["sizes"][-1][1] if s["sizes"] else {}
        out.append(
            [
                f"{name}, {f['minutes']} min at {f['rate']} msg/s",
                f"{f['sent']:,} sent: {o.get('in events', 0):,} in events, "
                f"{sum(v for k, v in o.items() if k.startswith('dead')):,} dead letters, "
                f"{o.get('expired', 0):,} expired, {o.get('lost', 0)} lost, "
                f"{o.get('duplicated', 0)} twice",
                f"{len(f['faults'])} faults, {s['job_runs']} job runs "
                f"({s['sigkilled']} SIGKILLed, {s['exited_unasked']} exited unasked)",
                f"rollups: {sum(r['mismatched'] for r in s['rollups'].values())} rows off",
                "resident at the end, steepest growth in a run: "
                + "; ".join(
                    f"{who} {mib:,.0f} MiB, " + ("-" if v is None else f"{v:+,.0f} MiB/h")
                    for who, mib, v in zip(
                        ("JVM", "Python"),
                        s["memory_mib_last"] or (0, 0),
                        (slope["jvm_mib_per_h"], slope["python_mib_per_h"]),
                        strict=True,
                    )
                ),
                f"at the end: ledger {last.get('ledger_rows', '?')} rows, checkpoint "
                f"{last.get('checkpoint_objects', '?')} objects, max lag "
                f"{max((x for _, x in s['lag_max_per_5_min']), default=0):,} messages",
            ]
        )
    return out


def derived(f: dict[str, Any]) -> dict[str, Any]:
    """The headline's figures: over both servers."""
    servers = list(f["servers"].values())
    off = sum(r["mismatched"] for s in servers for r in s["rollups"].values())
    ledger = max(s["sizes"][-1][1]["ledger_rows"] for s in servers if s["sizes"])
    checkpoint = max(s["sizes"][-1][1]["checkpoint_objects"] for s in servers if s["sizes"])
    return {
        "servers": " and ".join(f["servers"]),
        "fault_count": len(f["faults"]),
        "lost": sum(s["outcome"].get("lost", 0) for s in servers),
        "twice": sum(s["outcome"].get("duplicated", 0) for s in servers),
        "rollups": f"{off} rollup rows off" if off else "every rollup equal to SQL over raw events",
        "bounded": f"at most {ledger} ledger rows and {checkpoint} checkpoint objects at the end",
    }


SCENARIO = Scenario(
    name="soak",
    doc=__doc__ or "",
    run=run,
    flags={"minutes": 60.0, "rate": 200, "fault_every": 120.0},
    quick={"minutes": 3.5, "fault_every": 15.0},
    targets=targets,
    rows=rows,
    title="Soak",
    columns=("run", "messages", "faults", "rollups", "memory", "bounded"),
    derived=derived,
    headline=(
        "soak, {minutes:.0f} min at {rate} msg/s, {fault_count} faults (jobs SIGKILLed; Kafka,"
        " PostgreSQL, a Citus worker, the object store restarted)"
        " | {sent:,} messages into {servers}: {lost} lost, {twice} twice; {rollups}; {bounded}"
    ),
)


if __name__ == "__main__":
    figures = SCENARIO.main()
    missed = [name for name, t in figures["targets"].items() if not t["met"]]
    raise SystemExit(f"soak: missed {', '.join(missed)}" if missed else 0)
