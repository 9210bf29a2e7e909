"""The ingest job's OpenMetrics endpoint, scraped during a real run: its counters equal the
batch table, dead letters are counted by reason, the Kafka lag falls to 0 per partition."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clickstream_pipeline.ingest.ledger import query_totals
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.warehouse.database import ConnectionParams, fetch
from devkit.metrics import of, scrape
from devkit.ports import free_port
from devkit.processes import kill_group
from devkit.waits import wait_until
from tests.conftest import PROJECT_DIR
from tests.integration.ingest_support import (
    dead_letter_values,
    new_topic,
    produce_mix,
    start_job,
)


@contextlib.contextmanager
def prometheus_scraping(target_port: int, work: Path) -> Iterator[str]:
    """A Prometheus server (Debian's) scraping the endpoint every second; yields its API URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus binary: scripts/setup.sh installs Debian's package")
    port = free_port()
    config = work / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: ingest\n    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
    )
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(work / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        server.terminate()
        server.wait(timeout=30)


def promql(api: str, expr: str) -> list[dict]:
    """An instant query's series ([] while Prometheus is not up or has none)."""
    url = f"{api}/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        answer = json.loads(urllib.request.urlopen(url, timeout=5).read())
    except OSError:
        return []
    return list(answer["data"]["result"])


def test_the_endpoint_counts_what_the_batch_table_records(
    spark, local_config, local_secrets, tmp_path
):
    conf = producer_config(local_config.kafka, local_secrets)
    db = ConnectionParams.from_jdbc_url(local_secrets["database"])
    topic = new_topic(conf, partitions=3)
    sent = produce_mix(conf, topic, 6_000, seed=51, malformed_share=0.03)
    query = f"q-{topic}"
    port = free_port()
    with prometheus_scraping(port, tmp_path) as api:
        job = start_job(
            "local",
            topic,
            tmp_path / "ingest.log",
            *("--set", f"ingest.metrics_port={port}"),
            *("--set", "kafka.max_offsets_per_trigger=1500"),
            *("--set", "ingest.rollup_after_batch=true"),
        )
        try:
            most_behind, totals = catch_up(job, port, db, query, sent.total, tmp_path)
            # the rollup runner (a driver thread) stamps and exports after the last batch too
            rolled_up = wait_until(
                lambda: last_rolled_up(db, query), 60, "the last batch stamped", every_s=0.5
            )
            wait_until(lambda: rollup_delays(port) == rolled_up, 30, "the rollup delays exported")
            samples = scrape(port)
            # a real scraper reads the same, and every Grafana panel's query answers
            batches = f'clickstream_ingest_batches_total{{query="{query}"}}'
            wait_until(
                lambda: _value(promql(api, batches)) == totals.batches,
                30,
                "Prometheus's count of batches",
                every_s=0.5,
            )
            # rate() over the window answers once two scrapes follow the last batch
            wait_until(
                lambda: all(promql(api, e.replace("$query", query)) for e in grafana_queries()),
                30,
                "an answer to every Grafana panel's query",
                every_s=0.5,
            )
            answers = {e: promql(api, e.replace("$query", query)) for e in grafana_queries()}
        finally:
            kill_group(job)

    assert of(samples, "clickstream_ingest_rows_total", outcome="read") == totals.read
    assert of(samples, "clickstream_ingest_rows_total", outcome="written") == totals.written
    assert of(samples, "clickstream_ingest_rows_total", outcome="duplicate") == totals.duplicates
    assert of(samples, "clickstream_ingest_rows_total", outcome="dead") == totals.dead
    stored = Counter(reason for _, reason in dead_letter_values(spark, local_config, query))
    counted = {
        dict(ls)["reason"]: v
        for (n, ls), v in samples.items()
        if n == "clickstream_ingest_dead_letters_total"
    }
    assert counted == stored and sum(stored.values()) == len(sent.invalid)
    assert of(samples, "clickstream_ingest_phase_seconds_count", phase="sink") == totals.batches
    assert of(samples, "clickstream_ingest_phase_seconds_count", phase="addBatch") >= totals.batches
    assert of(samples, "clickstream_ingest_delay_seconds_count", query=query) >= totals.batches
    lag = {
        dict(ls)["partition"]: v
        for (n, ls), v in samples.items()
        if n == "clickstream_ingest_kafka_lag_records" and dict(ls)["topic"] == topic
    }
    assert lag == {"0": 0, "1": 0, "2": 0}  # caught up on every partition
    assert most_behind > 0, "the lag was never seen above 0 while catching up"
    assert time.time() - of(samples, "clickstream_ingest_last_batch_timestamp_seconds") < 60
    assert answers and all(answers.values()), [e for e, series in answers.items() if not series]
    # the last batch's tenants, as stored; the rollups' lag for every rollup
    ((last,),) = fetch(
        db, "SELECT max(batch_id) FROM clickstream_ingest_batches WHERE query_name = %s", (query,)
    )
    tenants = fetch(
        db,
        """SELECT coalesce(customer_id::text, 'other'), rows_written, max_delay_seconds
           FROM clickstream_ingest_tenant_freshness WHERE query_name = %s AND batch_id = %s""",
        (query, last),
    )
    assert len(tenants) > 1
    assert labelled(samples, "clickstream_ingest_tenant_delay_seconds", "customer") == {
        customer: max(seconds, 0.0) for customer, _, seconds in tenants
    }
    assert labelled(samples, "clickstream_ingest_tenant_rows", "customer") == {
        customer: rows for customer, rows, _ in tenants
    }
    # the tenants' delay to every rollup, as the view gives it for the last batch rolled up
    assert set(rolled_up) == {customer for customer, _, _ in tenants}
    assert all(rolled_up[c] >= seconds for c, _, seconds in tenants)
    behind = labelled(samples, "clickstream_rollup_lag_events", "rollup")
    assert set(behind) == {name for (name,) in fetch(db, "SELECT name FROM rollups")}
    assert all(v >= 0 for v in behind.values())


def labelled(samples: dict, name: str, label: str) -> dict[str, float]:
    """`name`'s samples by the value of one label."""
    return {dict(ls)[label]: v for (n, ls), v in samples.items() if n == name}


def rollup_delays(port: int) -> dict[str, float]:
    return labelled(scrape(port), "clickstream_ingest_tenant_rollup_delay_seconds", "customer")


def last_rolled_up(db, query: str) -> dict[str, float]:
    """The last batch's tenants and their delay to the rollups ({} until it is stamped)."""
    rows = fetch(
        db,
        """SELECT coalesce(customer_id::text, 'other'), max_rollup_delay_seconds
           FROM clickstream_tenant_freshness
           WHERE query_name = %s AND rolled_up_at IS NOT NULL AND batch_id = (
               SELECT max(batch_id) FROM clickstream_ingest_batches WHERE query_name = %s)""",
        (query, query),
    )
    return {customer: max(seconds, 0.0) for customer, seconds in rows}


def catch_up(job, port: int, db, query: str, total: int, work: Path) -> tuple[float, Any]:
    """Scrape while the job reads `total` records; the most lag seen and the batch totals once
    the counters show every batch."""
    most_behind = [0.0]

    def all_read() -> bool:
        lag = of(scrape(port), "clickstream_ingest_kafka_lag_records")
        most_behind[0] = max(most_behind[0], lag)
        return query_totals(db, query).read >= total

    wait_until(all_read, 300, f"{total} records read", process=job, log=work / "ingest.log")
    totals = query_totals(db, query)
    # the batch table row commits just before the counters move, and Spark's progress event
    # (its phases, the lag) comes after the batch's offsets commit: wait for both
    wait_until(
        lambda: of(scrape(port), "clickstream_ingest_batches_total") == totals.batches,
        30,
        "the batch counter",
    )
    spark_phases = "clickstream_ingest_phase_seconds_count"
    wait_until(
        lambda: of(scrape(port), spark_phases, phase="addBatch") >= totals.batches,
        30,
        "Spark's progress of every batch",
    )
    return most_behind[0], totals


def _value(series: list[dict]) -> float | None:
    return float(series[0]["value"][1]) if series else None


def grafana_queries() -> list[str]:
    dashboard = json.loads((PROJECT_DIR / "docs" / "grafana" / "ingest.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
