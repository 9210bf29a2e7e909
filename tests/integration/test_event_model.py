"""The event model on a live system: the shipped example model end to end (bootstrap, producer,
ingest exactly once through SIGKILL, one dead letter per rule, unknown fields kept), and the
model evolving while the job runs (additive changes applied, destructive ones refused)."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from confluent_kafka import Producer

from clickstream_pipeline.core.model import load_model
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.traffic.generator import model_events
from clickstream_pipeline.warehouse.database import ConnectionParams, connect
from clickstream_pipeline.warehouse.event_table import (
    MODELS_LEDGER,
    ModelChangeError,
    apply_model,
    model_columns,
)
from devkit.db import query
from devkit.processes import kill_group
from devkit.waits import wait_until
from tests.breaking import WEB_EVENT, breaking_messages
from tests.conftest import PROJECT_DIR
from tests.integration.ingest_support import batch_totals, dead_letter_values, new_topic, start_job
from tests.integration.job_database import JobDatabase, job_database, run_bootstrap

WEB = load_model("web_analytics")
WEB_ONLY = sorted(set(model_columns(WEB)) - set(model_columns(load_model("lab"))))
MAX_MESSAGE_BYTES = 4096
CENT = Decimal("0.01")
# each partition of events and its file: a rewrite gives it a new one
FILE_NODES = """SELECT c.relname, pg_relation_filenode(c.oid) FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass ORDER BY 1"""


@pytest.fixture(scope="module")
def web_db(tier, tmp_path_factory) -> Iterator[JobDatabase]:
    with job_database(tier.db, tmp_path_factory.mktemp("model"), "model") as db:
        yield db


def bootstrap(tier, database: JobDatabase, model: str, *extra: str) -> subprocess.CompletedProcess:
    return run_bootstrap(tier.env, database, model, *extra)


def web_events(n: int, first_id: int, seed: int, extra_every: int = 7) -> list[dict[str, Any]]:
    """Events drawn by the producer's generator from the example model; every
    `extra_every`-th with fields the model does not name."""
    out = []
    for i, event in enumerate(itertools.islice(model_events(WEB, seed=seed), n)):
        event["event_id"] = first_id + i
        if i % extra_every == 0:
            event |= {"coupon": f"C{i}", "big": 123456789012345678901234567890, "ratio": 1.50}
        out.append(event)
    return out


def expected_row(event: dict[str, Any], coupon_column: bool = False) -> tuple:
    revenue = event.get("revenue")
    extras = {k: v for k, v in event.items() if k not in WEB.payload_fields}
    if coupon_column:
        extras.pop("coupon", None)
    return (
        event["customer_id"],
        event["page_url"],
        None if revenue is None else Decimal(str(revenue)).quantize(CENT, ROUND_HALF_UP),
        event.get("context"),
        extras or None,
        event.get("coupon") if coupon_column else None,
    )


def send(conf: dict, topic: str, values: list[bytes | None]) -> None:
    producer = Producer({**conf, "linger.ms": 20})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=str(i).encode(), partition=i % 2)
    assert producer.flush(30) == 0


def stored(db: ConnectionParams, topic: str, coupon: bool) -> dict[int, tuple]:
    rows = query(
        db,
        "SELECT source_event_id, customer_id, page_url, revenue, context, properties, "
        + ("coupon" if coupon else "NULL")
        + " FROM events WHERE kafka_topic = %s",
        (topic,),
    )
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "a valid message was written twice"
    return {r[0]: tuple(r[1:]) for r in rows}


def as_values(rows: dict[int, tuple]) -> dict[int, tuple]:
    """Rows with their JSON compared by value, numbers exactly (jsonb keeps 1.50 and big ints)."""

    def exact(value: Any) -> Any:
        text = json.dumps(value)
        return json.loads(text, parse_float=Decimal)

    return {
        k: (*r[:3], exact(r[3]), exact(r[4]) if r[4] is not None else None, r[5])
        for k, r in rows.items()
    }


def test_the_example_model_ingests_exactly_once_and_evolves_while_the_job_runs(
    tier, web_db, spark, tmp_path
):
    db = web_db.params
    # the bootstrap: a dry run prints the columns it would add and adds none
    dry = bootstrap(tier, web_db, "web_analytics", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert 'ALTER TABLE "public"."events" ADD COLUMN IF NOT EXISTS "page_url" text;' in dry.stdout
    assert query(db, "SELECT to_regclass('events') IS NOT NULL")[0] == (True,)
    live = {
        c
        for (c,) in query(
            db, "SELECT attname FROM pg_attribute WHERE attrelid = 'events'::regclass"
        )
    }
    assert not live & set(WEB_ONLY)
    files = query(db, FILE_NODES)
    done = bootstrap(tier, web_db, "web_analytics")
    assert done.returncode == 0, done.stdout + done.stderr
    added = ", ".join(c for c in model_columns(WEB) if c in WEB_ONLY)
    assert f"event model 'web_analytics': added {added}" in done.stdout
    assert query(db, FILE_NODES) == files, "adding the model's columns rewrote events"

    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    log = tmp_path / "ingest.log"
    common = (
        "--set",
        f"secrets.file={web_db.secrets}",
        "--set",
        f"ingest.max_message_bytes={MAX_MESSAGE_BYTES}",
    )

    # lot A: valid events, fields the model does not name, and one breaking message per rule
    lot_a = web_events(1_200, first_id=1, seed=5)
    breaking = breaking_messages(WEB, WEB_EVENT, MAX_MESSAGE_BYTES)
    send(conf, topic, [json.dumps(e).encode() for e in lot_a] + list(breaking.values()))
    sink = f"q-{topic}"

    def copies() -> int:
        return query(db, "SELECT count(*) FROM clickstream_ingest_ledger WHERE sink = %s", (sink,))[
            0
        ][0]

    # the job, running; the model gains a field meanwhile
    job = start_job(
        tier.env,
        topic,
        log,
        *common,
        "--set",
        "ingest.model=web_analytics",
        "--set",
        "kafka.max_offsets_per_trigger=400",
        "--set",
        "ingest.trigger_interval=1 second",
    )
    try:
        wait_until(lambda: copies() > 0, 180, "the first COPY", process=job, log=log)
        v2 = tmp_path / "web_analytics.toml"
        text = (PROJECT_DIR / "conf" / "models" / "web_analytics.toml").read_text()
        event_id = 'event_id = { type = "bigint", min = 1 }\n'
        coupon = 'coupon = { type = "text", max_length = 40 }\n'
        v2.write_text(
            text.replace("max = 86400000 }", "max = 172800000 }").replace(
                event_id, event_id + coupon
            )
        )
        evolved = bootstrap(tier, web_db, str(v2))
        assert evolved.returncode == 0, evolved.stdout + evolved.stderr
        assert "event model 'web_analytics': added coupon" in evolved.stdout
        wait_until(
            lambda: len(stored(db, topic, coupon=False)) >= len(lot_a),
            180,
            "lot A in events",
            process=job,
            log=log,
        )
        assert job.poll() is None, "the job died when the table gained a column"
        lot_b = web_events(500, first_id=10_001, seed=6)
        before = copies()
        send(conf, topic, [json.dumps(e).encode() for e in lot_b])
        wait_until(lambda: copies() > before, 180, "lot B's first COPY", process=job, log=log)
    finally:
        kill_group(job)  # SIGKILL, likely between a COPY and Spark's commit

    # changes that would lose or rewrite data are refused, naming the field; nothing changes
    def without_referrer(text: str) -> str:
        return "".join(line for line in text.splitlines(True) if not line.startswith("referrer ="))

    def revenue_as_double(text: str) -> str:
        numeric = 'revenue = { type = "numeric", precision = 12, scale = 2, min = 0 }'
        return text.replace(numeric, 'revenue = { type = "double", min = 0 }')

    for change, named in (
        (without_referrer, "field 'referrer' was in model 'web_analytics'"),
        (revenue_as_double, "field 'revenue': public.events.revenue is numeric(12,2)"),
    ):
        bad = tmp_path / "bad" / "web_analytics.toml"
        bad.parent.mkdir(exist_ok=True)
        bad.write_text(change(v2.read_text()))
        assert bad.read_text() != v2.read_text()
        refused = bootstrap(tier, web_db, str(bad))
        assert refused.returncode != 0 and named in refused.stderr, refused.stderr
    (recorded,) = query(
        db, f"SELECT columns FROM {MODELS_LEDGER} WHERE model_name = 'web_analytics'"
    )[0]
    assert recorded == model_columns(load_model(str(v2)))
    with pytest.raises(ModelChangeError, match="tenant 'session_id'"):
        conn = connect(db)
        try:
            apply_model(conn, load_model(str(v2)).model_copy(update={"tenant": "session_id"}))
        finally:
            conn.close()

    # lot C, read by the job restarted with the new model: the field in its column
    lot_c = web_events(300, first_id=20_001, seed=7)
    send(conf, topic, [json.dumps(e).encode() for e in lot_c])
    job = start_job(tier.env, topic, log, *common, "--set", f"ingest.model={v2}", "--available-now")
    assert job.wait(timeout=300) == 0, log.read_text()[-3000:]

    got = stored(db, topic, coupon=True)
    want = {e["event_id"]: expected_row(e) for e in lot_a}
    want |= {e["event_id"]: expected_row(e, coupon_column=True) for e in lot_c}
    # lot B: its rows copied before the kill by the old model (the coupon in properties), the
    # rest by the new one (in its column)
    old_model = {e["event_id"] for e in lot_b if got.get(e["event_id"], (None,) * 6)[5] is None}
    want |= {e["event_id"]: expected_row(e, e["event_id"] not in old_model) for e in lot_b}
    assert as_values(got) == as_values(want)
    assert old_model, "no row of lot B was written before the kill"
    dead = dead_letter_values(spark, tier.config, f"q-{topic}")
    assert Counter(reason for _, reason in dead) == Counter(list(breaking)), "one per rule"
    assert {reason: value for value, reason in dead} == breaking  # each kept as it was sent
    _, read, written, duplicates, dead_count = batch_totals(db, f"q-{topic}")
    assert read == written + duplicates + dead_count
    view = query(db, "SELECT count(*), count(coupon) FROM bi_web_analytics_events_last_day")
    assert view == [(len(want), len([r for r in got.values() if r[5] is not None]))]
    if tier.citus:  # the new column reached every shard
        ((with_column, shards),) = query(
            db,
            """SELECT count(*) FILTER (WHERE result = 'coupon'), count(*)
               FROM run_command_on_shards('events', $$SELECT attname FROM pg_attribute
                   WHERE attrelid = '%s'::regclass AND attname = 'coupon'$$)""",
        )
        assert with_column == shards > 0
