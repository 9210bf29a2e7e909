"""The ingest job end to end: Kafka -> Spark -> events + dead letters, exactly once."""

from __future__ import annotations

import collections
import signal
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.errors import SourceConfigError
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.ingest.source import (
    kafka_read_options,
    producer_config,
)
from clickstream_pipeline.ingest.stream import (
    ingest_settings,
    process_batch,
    replay_dead_letters,
    start_ingest,
)
from clickstream_pipeline.ingest.topics import describe_topics
from clickstream_pipeline.warehouse.rollup_runner import aggregate, runner_for
from devkit.db import bootstrapped_database, query
from devkit.processes import log_tail
from devkit.stack import secrets_for
from devkit.waits import wait_until
from tests.integration.ingest_support import (
    MALFORMED,
    assert_exactly_once,
    batch_totals,
    consume_all,
    dead_letter_values,
    new_topic,
    produce_mix,
    start_job,
)

pytestmark = pytest.mark.independent  # each test its own topic, query and job


def ingest_config(
    base: Config, topic: str, ingest: dict[str, object] | None = None, **kafka: object
) -> Config:
    name = f"q-{topic}"
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topics": [topic], **kafka}),
            "ingest": base.ingest.model_copy(
                update={"query_name": name, "trigger": "available_now", **(ingest or {})}
            ),
        }
    )


def run_available_now(spark, cfg: Config, secrets: Secrets) -> None:
    query = start_ingest(spark, cfg, secrets)
    query.awaitTermination(600)
    assert query.exception() is None


def test_80k_messages_with_malformed_ones_land_exactly_once(spark, tier, db):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf)
    sent = produce_mix(conf, topic, 80_000)
    assert 600 < len(sent.invalid) < 1000
    cfg = ingest_config(tier.config, topic, max_offsets_per_trigger=24_000)

    run_available_now(spark, cfg, tier.secrets)

    assert_exactly_once(db, sent)
    dead = dead_letter_values(spark, cfg, cfg.ingest.query_name)
    assert collections.Counter(v for v, _ in dead) == collections.Counter(sent.invalid)
    assert all(reason == EXPECTED_REASONS[value] for value, reason in dead)
    batches, read, written, duplicates, dead_count = batch_totals(db, cfg.ingest.query_name)
    assert batches == 4  # 80k at 24k per trigger (and up to one more a partition)
    assert read == sent.total == written + duplicates + dead_count
    assert (written, dead_count) == (len(sent.valid), len(sent.invalid))


def test_a_backlog_starts_with_a_small_batch_then_takes_whole_ones(spark, tier, db):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=4)
    sent = produce_mix(conf, topic, 34_000, seed=5)
    first = {"first_batch_max_offsets": 4_000}
    cfg = ingest_config(tier.config, topic, max_offsets_per_trigger=10_000, **first)

    run_available_now(spark, cfg, tier.secrets)

    # the first batch small (its rows land sooner), then whole ones: Spark floors each
    # partition's share of the limit, and without the job's allowance for that, 3 x 10,000
    # messages took 4 batches, the last of a few rows
    read = query(
        db,
        "SELECT rows_read FROM clickstream_ingest_batches WHERE query_name = %s ORDER BY batch_id",
        (cfg.ingest.query_name,),
    )
    rows = [r[0] for r in read]
    assert len(rows) == 4, rows
    assert 4_000 <= rows[0] <= 4_000 + 4, rows  # up to one more a partition
    assert all(10_000 <= r <= 10_000 + 4 for r in rows[1:3]), rows
    assert_exactly_once(db, sent)


def partitions_of(kafka, secrets, timeout_s: float = 30.0) -> int:
    return sum(len(t.ends) for t in describe_topics(kafka, secrets, timeout_s).values())


def test_the_partitions_of_the_topics_or_the_pattern_the_job_reads(tier):
    conf = producer_config(tier.config.kafka, tier.secrets)
    three, two = new_topic(conf, partitions=3), new_topic(conf, partitions=2)
    kafka = tier.config.kafka

    assert partitions_of(kafka.model_copy(update={"topics": [three]}), tier.secrets) == 3
    listed = kafka.model_copy(update={"topics": [three, two, "no-such-topic"]})
    assert partitions_of(listed, tier.secrets) == 5
    pattern = kafka.model_copy(update={"topic_pattern": f"({three}|{two})"})
    assert partitions_of(pattern, tier.secrets) == 5
    # without the topics' identities the job cannot key its ledger: it stops, saying why
    gone = kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1", "topics": [three]})
    with pytest.raises(SourceConfigError, match="cannot describe the subscribed topics"):
        partitions_of(gone, tier.secrets, timeout_s=1.0)


def test_spark_rules_for_every_record_land_the_same_records(spark, tier, db):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 20_000, seed=5, malformed_share=0.05)
    cfg = ingest_config(tier.config, topic, {"validation": "spark"})

    run_available_now(spark, cfg, tier.secrets)

    assert_exactly_once(db, sent)
    dead = dead_letter_values(spark, cfg, cfg.ingest.query_name)
    assert collections.Counter(v for v, _ in dead) == collections.Counter(sent.invalid)
    _, read, written, duplicates, dead_count = batch_totals(db, cfg.ingest.query_name)
    assert read == sent.total == written + duplicates + dead_count


def test_background_rollups_count_every_event_once(spark, tier):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 30_000, seed=6, malformed_share=0)
    cfg = ingest_config(
        tier.config,
        topic,
        {"rollup_after_batch": True, "rollup_in_background": True},
        max_offsets_per_trigger=5_000,
    )
    # a database of its own: the rollups' totals are compared with every row of events
    with bootstrapped_database(tier.db) as db:
        run_available_now(spark, cfg, secrets_for(tier.secrets, db))
        runner = runner_for(cfg.ingest.query_name, lambda: None)
        assert runner.wait_idle(120) and runner.runs >= 1 and runner.last_error is None

        assert_exactly_once(db, sent)
        ((events, last_id),) = query(db, "SELECT count(*), max(event_id) FROM events")
        ((counted, aggregated_to),) = query(
            db,
            """SELECT (SELECT sum(event_count) FROM rollup_events_5min),
                      (SELECT last_aggregated_id FROM rollups WHERE name = 'rollup_events_5min')""",
        )
        assert aggregated_to >= last_id
        assert counted == events == len(sent.valid)


def test_a_replayed_batch_writes_nothing_twice(spark, tier, db):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 5_000, seed=2, malformed_share=0.05)
    cfg = ingest_config(tier.config, topic)
    settings = ingest_settings(cfg, tier.secrets)
    from clickstream_pipeline.ingest import dead_letters

    dead_letters.ensure_table(spark, settings.dead_letter_path)
    options = kafka_read_options(cfg.kafka, tier.secrets)
    batch = spark.read.format("kafka").options(**options).load()

    first = process_batch(batch, 0, settings)
    again = process_batch(batch, 0, settings)  # what Spark does after a crash before its commit

    assert (first.rows_written, first.rows_duplicate) == (len(sent.valid), 0)
    assert (again.rows_written, again.rows_duplicate) == (0, len(sent.valid))
    assert again.rows_dead == first.rows_dead == len(sent.invalid)
    assert again.balanced and first.balanced
    assert_exactly_once(db, sent)
    assert len(dead_letter_values(spark, cfg, cfg.ingest.query_name)) == len(sent.invalid)


def test_the_event_hubs_form_through_sasl_ssl(spark, tier, db):
    kafka = tier.config.kafka.model_copy(
        update={"security": "eventhubs", "bootstrap_servers": None}
    )
    conf = producer_config(kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 3_000, seed=3)
    cfg = ingest_config(tier.config, topic, security="eventhubs", bootstrap_servers=None)
    run_available_now(spark, cfg, tier.secrets)
    assert_exactly_once(db, sent)


def test_rows_the_database_rejects_are_dead_lettered_and_the_rest_commit(spark, tier, db):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=1)
    sent = produce_mix(conf, topic, 2_000, seed=4, malformed_share=0)
    cfg = ingest_config(tier.config, topic)
    # A rule of the database's own (as a user's constraint might be) rejects some rows.
    constraint = f"no_tenant_x50_{topic[-10:]}"
    query(
        db,
        f"ALTER TABLE events ADD CONSTRAINT {constraint} "
        f"CHECK (kafka_topic IS DISTINCT FROM '{topic}' OR customer_id % 50 <> 0) NOT VALID",
    )
    try:
        run_available_now(spark, cfg, tier.secrets)
    finally:
        query(db, f"ALTER TABLE events DROP CONSTRAINT {constraint}")
    banned = {k for k, v in sent.valid.items() if v[0] % 50 == 0}
    everything = sent.valid
    sent.valid = {k: v for k, v in everything.items() if k not in banned}
    assert_exactly_once(db, sent)
    dead = dead_letter_values(spark, cfg, cfg.ingest.query_name)
    assert len(dead) == len(banned) > 0
    assert all(reason.startswith("db_rejected: ") and constraint in reason for _, reason in dead)

    # the fix (the constraint is gone): replay writes them, once
    first = replay_dead_letters(spark, cfg, tier.secrets)
    assert (first.considered, first.written, first.still_dead) == (len(banned), len(banned), {})
    again = replay_dead_letters(spark, cfg, tier.secrets)
    assert (again.considered, again.written) == (0, 0)
    sent.valid = everything
    assert_exactly_once(db, sent)


def test_a_secret_free_settings_repr(tier):
    settings = ingest_settings(tier.config, tier.secrets)
    password = tier.db.password
    assert isinstance(password, SecretStr)
    assert password.get_secret_value() not in repr(settings)


def test_freshness_per_tenant_follows_the_kafka_timestamps_of_each_batch(spark, tier, db):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 6_000, seed=61, malformed_share=0.02)
    top = {"tenant_freshness_top": 4}
    cfg = ingest_config(tier.config, topic, top, max_offsets_per_trigger=2000)
    name = cfg.ingest.query_name

    run_available_now(spark, cfg, tier.secrets)

    stamp = {
        (m.partition(), m.offset()): datetime.fromtimestamp(m.timestamp()[1] / 1000, UTC)
        for m in consume_all(conf, topic, sent.total)
    }
    customer = {
        (p, o): c
        for p, o, c in query(
            db,
            "SELECT kafka_partition, kafka_offset, customer_id FROM events WHERE kafka_topic = %s",
            (topic,),
        )
    }
    # each batch's records, by customer, from the offset ranges its sinks wrote
    batches: dict[int, dict[int, list[datetime]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for batch, partition, start, end in query(
        db,
        """SELECT batch_id, kafka_partition, start_offset, end_offset
           FROM clickstream_ingest_ledger WHERE sink LIKE %s AND kafka_topic = %s""",
        (name + "%", topic),
    ):
        for offset in range(start, end + 1):
            if (partition, offset) in customer:  # a span also covers its dead letters
                batches[batch][customer[partition, offset]].append(stamp[partition, offset])
    stored = query(
        db,
        """SELECT batch_id, customer_id, customers, rows_written, max_delay_seconds,
                  min_delay_seconds, committed_at
           FROM clickstream_ingest_tenant_freshness WHERE query_name = %s""",
        (name,),
    )
    assert len(batches) >= 3 and {s[0] for s in stored} == set(batches)

    def delay(committed: datetime, at: datetime) -> float:
        return (committed - at).total_seconds()

    for batch, records in batches.items():
        rows = [s for s in stored if s[0] == batch]
        committed = rows[0][6]
        named = {s[1]: s for s in rows if s[1] is not None}
        assert 4 <= len(named) <= 8  # the 4 busiest and the 4 slowest, overlapping or not
        for c, (_, _, n, written, slowest, newest, _) in named.items():
            assert (n, written) == (1, len(records[c]))
            assert abs(slowest - delay(committed, min(records[c]))) < 1e-3
            assert abs(newest - delay(committed, max(records[c]))) < 1e-3
        assert max(s[3] for s in named.values()) == max(len(r) for r in records.values())
        oldest = min(min(r) for r in records.values())
        assert abs(max(s[4] for s in named.values()) - delay(committed, oldest)) < 1e-3
        (other,) = [s for s in rows if s[1] is None]
        rest = set(records) - set(named)
        assert other[2:4] == (len(rest), sum(len(records[c]) for c in rest))
        assert abs(other[4] - delay(committed, min(min(records[c]) for c in rest))) < 1e-3

    # to the rollups: a batch is stamped once every rollup has aggregated past its events
    event_ids = {
        batch: max(ids)
        for batch, ids in query(
            db,
            """SELECT l.batch_id, array_agg(e.event_id) FROM clickstream_ingest_ledger l
               JOIN events e ON e.kafka_topic = l.kafka_topic
                AND e.kafka_partition = l.kafka_partition
                AND e.kafka_offset BETWEEN l.start_offset AND l.end_offset
               WHERE l.sink LIKE %s AND l.kafka_topic = %s GROUP BY 1""",
            (name + "%", topic),
        )
    }
    assert set(event_ids) == set(batches)

    def stamps() -> list[tuple]:
        return query(
            db,
            """SELECT batch_id, events_through_id, rolled_up_at, committed_at,
                      events_through_id <= (SELECT min(last_aggregated_id) FROM rollups)
               FROM clickstream_ingest_batches WHERE query_name = %s""",
            (name,),
        )

    for batch, through, rolled_up_at, _, covered in stamps():
        assert through >= event_ids[batch]
        assert covered or rolled_up_at is None  # pg_cron's stamp may come first, never early
    before = datetime.now(UTC)
    aggregate(db.psycopg_kwargs("test", 10))
    for batch, _, rolled_up_at, committed, covered in stamps():
        assert covered and committed <= rolled_up_at <= datetime.now(UTC)
        if rolled_up_at < before:  # stamped by pg_cron: as late as a minute
            continue
        for c, to_rollups in query(
            db,
            """SELECT customer_id, max_rollup_delay_seconds FROM clickstream_tenant_freshness
               WHERE query_name = %s AND batch_id = %s AND customer_id IS NOT NULL""",
            (name, batch),
        ):
            assert abs(to_rollups - delay(rolled_up_at, min(batches[batch][c]))) < 1e-3


# each malformed message of `produce_mix`, and the first rule it breaks
EXPECTED_REASONS = dict(
    zip(
        MALFORMED,
        [
            "malformed_json",
            "malformed_json",
            "malformed_json",
            "invalid_utf8",
            "not_integer_customer_id",
            "missing_customer_id",
            "too_long_country",
            "control_chars_event_type",
            "empty_event_type",
            "not_integer_customer_id",
        ],
        strict=True,
    )
)


def test_every_dead_letter_carries_the_first_rule_its_message_breaks(spark, tier, db):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 3_000, seed=8, malformed_share=0.1)
    cfg = ingest_config(tier.config, topic)

    run_available_now(spark, cfg, tier.secrets)

    dead = dead_letter_values(spark, cfg, cfg.ingest.query_name)
    assert len(dead) == len(sent.invalid) and set(sent.invalid) == set(MALFORMED)
    assert {value: reason for value, reason in dead} == EXPECTED_REASONS


def test_an_available_now_run_returns_with_its_last_batches_rolled_up(tier, db, tmp_path):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 6_000, seed=35, malformed_share=0)
    log = tmp_path / "ingest.log"
    job = start_job(
        tier.env,
        topic,
        log,
        "--available-now",
        "--set",
        "ingest.rollup_after_batch=true",
        "--set",
        "kafka.max_offsets_per_trigger=2000",
    )
    assert job.wait(300) == 0, log_tail(log)

    # the rollup runner stamps a batch once every rollup holds its events: right after the
    # job returns, every batch is, the last included
    stamped = query(
        db,
        """SELECT batch_id, rolled_up_at IS NOT NULL FROM clickstream_ingest_batches
           WHERE query_name = %s ORDER BY batch_id""",
        (f"q-{topic}",),
    )
    assert len(stamped) == 3 and all(done for _, done in stamped), stamped
    assert_exactly_once(db, sent)


def test_sigterm_stops_a_running_job_once_its_rollups_are_drained(tier, db, tmp_path):
    conf = producer_config(tier.config.kafka, tier.secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 20_000, seed=37, malformed_share=0)
    log = tmp_path / "ingest.log"
    name = f"q-{topic}"
    job = start_job(
        tier.env,
        topic,
        log,
        "--set",
        "ingest.rollup_after_batch=true",
        "--set",
        "kafka.max_offsets_per_trigger=5000",
    )
    # a scheduler's stop right after the last batch's record, while its rollups run
    wait_until(
        lambda: batch_totals(db, name)[2] >= len(sent.valid),
        300,
        "every message written",
        every_s=0.05,
        process=job,
        log=log,
    )
    job.send_signal(signal.SIGTERM)
    assert job.wait(180) == 0, log_tail(log)

    stamped = query(
        db,
        """SELECT batch_id, rolled_up_at IS NOT NULL FROM clickstream_ingest_batches
           WHERE query_name = %s AND rows_written > 0 ORDER BY batch_id""",
        (name,),
    )
    assert len(stamped) >= 4 and all(done for _, done in stamped), stamped
    assert f"rollups of {name} drained" in log.read_text()
    assert_exactly_once(db, sent)
