"""The notebooks run as plain Python against the local stack, in order, on a scratch database."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickstream_pipeline.core.secrets import read_secret_file
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.warehouse.database import ConnectionParams
from clickstream_pipeline.warehouse.migrations import load_migrations
from clickstream_pipeline.warehouse.queries import load_queries
from devkit.db import query, scratch_database
from tests.conftest import PROJECT_DIR
from tests.integration.ingest_support import assert_exactly_once, new_topic, produce_mix

NOTEBOOKS = PROJECT_DIR / "notebooks"
EXPECTED = ["1-Bootstrap.py", "2-Consume-Kafka.py", "3-Dashboard-Queries.py"]
CELL = "\n# COMMAND ----------\n"


def test_every_notebook_is_in_databricks_source_format():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.py")) == EXPECTED
    for name in EXPECTED:
        text = (NOTEBOOKS / name).read_text(encoding="utf-8")
        assert text.startswith("# Databricks notebook source\n"), name
        cells = text.split(CELL)
        assert len(cells) >= 3, name
        assert cells[0].splitlines()[1] == "# MAGIC %md", name
        for cell in cells:
            magic = [line for line in cell.splitlines() if line.startswith("# MAGIC")]
            assert all(line == "# MAGIC" or line.startswith("# MAGIC ") for line in magic), name


@pytest.fixture(scope="module")
def scratch(local_secrets) -> Iterator[ConnectionParams]:
    with scratch_database(ConnectionParams.from_jdbc_url(local_secrets["database"])) as db:
        yield db


def secrets_file_for(db: ConnectionParams, folder: Path, local_file: str) -> Path:
    """The stack's secrets, with the database secret pointing at `db`."""
    values = read_secret_file(Path(local_file))
    assert db.password is not None
    values["Database-Connection-String"] = db.jdbc_url(with_credentials=True)
    path = folder / "secrets.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    path.chmod(0o600)
    return path


def run_notebook(name: str, environ: dict[str, str]) -> str:
    done = subprocess.run(
        [str(PROJECT_DIR / ".venv" / "bin" / "python"), str(NOTEBOOKS / name)],
        cwd=PROJECT_DIR,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def test_the_notebooks_bootstrap_ingest_and_query_a_fresh_database(
    local_config, local_secrets, scratch: ConnectionParams, tmp_path: Path
):
    conf = producer_config(local_config.kafka, local_secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 2_000, seed=11, malformed_share=0.02)
    query_name = f"nb-{uuid.uuid4().hex[:10]}"
    environ = {
        **os.environ,
        "CLICKSTREAM__SECRETS__FILE": str(
            secrets_file_for(scratch, tmp_path, local_config.secrets.file or "")
        ),
        "CLICKSTREAM__KAFKA__TOPICS": f'["{topic}"]',
        "CLICKSTREAM__INGEST__QUERY_NAME": query_name,
        "CLICKSTREAM__INGEST__ROLLUP_AFTER_BATCH": "true",
        # a fresh dead-letter table: the shared one's Delta log grows with every test run
        "CLICKSTREAM__STORAGE__LAKE_ROOT": str(tmp_path / "lake"),
    }

    out = run_notebook("1-Bootstrap.py", environ)
    migrations = load_migrations()
    assert f"bootstrap done: {len(migrations)} applied, 0 already applied" in out
    assert query(scratch, "SELECT count(*) FROM clickstream_schema_migrations") == [
        (len(migrations),)
    ]
    assert query(scratch, "SELECT to_regclass('public.events') IS NOT NULL") == [(True,)]

    out = run_notebook("2-Consume-Kafka.py", environ)
    assert_exactly_once(scratch, sent)
    assert (tmp_path / "lake" / "dead_letters" / "_delta_log").is_dir()
    assert re.search(rf"query {query_name} batch 0: {sent.total} rows in ", out), out[-3000:]
    assert (
        f"query {query_name}: 1 batches, read {sent.total}, written {len(sent.valid)}, "
        f"duplicates skipped 0, dead-lettered {len(sent.invalid)}"
    ) in out

    out = run_notebook("3-Dashboard-Queries.py", environ)
    for name in load_queries():
        assert f"-- {name} (" in out, name
    week = out.split("-- events_last_week (")[1].split("\n")
    # heading, columns, rule, then the row: num_events | distinct_devices
    assert week[3].split("|")[0].strip() == str(len(sent.valid)), "\n".join(week[:5])
