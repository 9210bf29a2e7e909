"""The ingest job and the consume notebook as Spark Connect clients (shared and serverless
compute speak only Spark Connect): a local Spark Connect server with the project's jars, the
job and then the notebook run against it with `spark.remote`, exactly once, the dead letters
written once under the streaming query's id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.core.spark_connect import start_server
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.ports import free_port
from devkit.processes import process_tree, showing_any
from tests.conftest import PROJECT_DIR
from tests.integration.conftest import LOCAL_SECRETS
from tests.integration.ingest_support import (
    assert_exactly_once,
    batch_totals,
    dead_letter_values,
    new_topic,
    produce_mix,
)


@contextmanager
def running_server(cfg: Config, secrets: Secrets, log_path: Path) -> Iterator[tuple[str, int]]:
    """A Spark Connect server started as `make spark-connect` starts it: (its url, its pid)."""
    port = free_port()
    with log_path.open("wb") as log:
        server = start_server(cfg, secrets, port, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield f"sc://127.0.0.1:{port}", server.pid
        finally:
            server.terminate()
            server.wait(timeout=60)


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    setting: str  # the ADLS account key's Spark setting
    keys: tuple[str, str]  # the ADLS account key and the object store's secret key


@pytest.fixture(scope="module")
def connect_server(
    local_config: Config, local_secrets: Secrets, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server for the module, with ADLS account-key auth beside the object store's keys."""
    account, key = "clickstreamargv", f"argv+check/{uuid.uuid4().hex}=="
    storage = local_config.storage.model_copy(update={"adls_auth": "account_key"})
    cfg = local_config.model_copy(update={"storage": storage})
    secrets = Secrets(
        {
            **{k: v for k in LOCAL_SECRETS if (v := local_secrets.get(k)) is not None},
            "adls_account_name": SecretStr(account),
            "adls_account_key": SecretStr(key),
        },
        "test",
    )
    log_path = tmp_path_factory.mktemp("spark-connect") / "server.log"
    with running_server(cfg, secrets, log_path) as (url, pid):
        yield Server(
            url,
            pid,
            f"spark.hadoop.fs.azure.account.key.{account}.dfs.core.windows.net",
            (key, local_secrets["s3_secret_key"].get_secret_value()),
        )


def test_no_key_of_the_server_is_on_a_command_line_of_its_processes(connect_server):
    """With ADLS account-key auth the key (and the object store's) reaches the server, yet no
    process of its tree shows it in /proc/<pid>/cmdline, which every local user can read."""
    client = subprocess.run(
        [sys.executable, "-c", CONF_OF_SERVER, connect_server.url, connect_server.setting],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    tree = process_tree(connect_server.pid)
    assert client.returncode == 0, client.stderr[-3000:]
    assert client.stdout.strip() == connect_server.keys[0]  # the key did reach the server
    assert len(tree) >= 2  # spark-submit's script became the JVM: at least it and a worker
    assert showing_any(tree, list(connect_server.keys)) == {}


# a Spark Connect client printing one setting of its server's session
CONF_OF_SERVER = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
spark.range(4).mapInArrow(lambda batches: batches, "id long").collect()  # a Python worker
print(spark.conf.get(sys.argv[2]))
"""


INGEST_JOB = ("-m", "clickstream_pipeline.jobs.ingest", "--available-now")
CONSUME_NOTEBOOK = ("notebooks/2-Consume-Kafka.py",)


def run_ingest(
    url: str, topic: str, query_name: str, lake: Path, how: tuple[str, ...]
) -> subprocess.CompletedProcess:
    """The ingest job or the consume notebook, as a client of the server at `url`."""
    environ = {
        **os.environ,
        "CLICKSTREAM__KAFKA__TOPICS": json.dumps([topic]),
        "CLICKSTREAM__INGEST__QUERY_NAME": query_name,
        "CLICKSTREAM__STORAGE__LAKE_ROOT": str(lake),
        "CLICKSTREAM__SPARK__REMOTE": url,
    }
    return subprocess.run(
        [sys.executable, *how],
        cwd=PROJECT_DIR,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_ingest_job_and_notebook_through_spark_connect_are_exactly_once(
    connect_server, spark, local_config, local_secrets, tmp_path
):
    conf = producer_config(local_config.kafka, local_secrets)
    db = ConnectionParams.from_jdbc_url(local_secrets["database"])
    topic = new_topic(conf, partitions=2)
    query_name = f"connect-{uuid.uuid4().hex[:10]}"
    sent = produce_mix(conf, topic, 3_000, seed=31, malformed_share=0.03)
    first = run_ingest(connect_server.url, topic, query_name, tmp_path / "lake", INGEST_JOB)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "client of the Spark Connect server" in first.stderr
    sent.add(produce_mix(conf, topic, 1_000, seed=32, malformed_share=0.03, first_id=10_000))
    # the consume notebook goes on from the job's checkpoint
    second = run_ingest(connect_server.url, topic, query_name, tmp_path / "lake", CONSUME_NOTEBOOK)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"query {query_name}: " in second.stdout and "client of the Spark Connect" in (
        second.stderr
    )

    assert_exactly_once(db, sent)
    batches, read, written, duplicates, dead = batch_totals(db, query_name)
    assert batches >= 2
    assert (read, written, duplicates, dead) == (sent.total, len(sent.valid), 0, len(sent.invalid))
    lake = local_config.storage.model_copy(update={"lake_root": str(tmp_path / "lake")})
    cfg = local_config.model_copy(update={"storage": lake})
    assert sorted(v for v, _ in dead_letter_values(spark, cfg, query_name)) == sorted(sent.invalid)
    # each batch's dead letters went in under the query's id (as on a classic session), so a
    # replayed batch is skipped by Delta, and a new checkpoint's batch 0 is not
    checkpoint = f"{local_config.storage.checkpoint_root}/{query_name}"
    query_id = spark.read.json(f"{checkpoint}/metadata").first()["id"]
    log = spark.read.json(f"{cfg.dead_letter_path}/_delta_log/*.json")
    app_ids = {r.txn.appId for r in log.filter("txn IS NOT NULL").select("txn").collect()}
    assert app_ids == {f"dead-letters:{query_id}"}
