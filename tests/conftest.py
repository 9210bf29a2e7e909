"""Shared fixtures: one SparkSession for the whole run, built as the jobs build theirs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from clickstream_pipeline.core.config import Config, load_config
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.core.spark import build_spark

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
# The tests' Spark JVMs compile with C1 only: short JVMs on 2 cores spend less CPU on the JIT
# (a 100-message available-now job: 14 CPU-s against 17 with the late C2 the jobs default to).
# The code they run is the same; benchmarks run with the configured options.
TEST_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"
os.environ.setdefault("CLICKSTREAM__SPARK__JAVA_OPTIONS", TEST_JAVA_OPTIONS)  # jobs tests start
# Under pytest-xdist each worker writes its own dead-letter table: Delta on S3 takes one writing
# driver per table (its S3 log store cannot refuse a second commit of the same version); and each
# Python (`make lane`'s Delta is newer) its own tables
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
PY = f"py{sys.version_info.major}{sys.version_info.minor}"
LAKE_ROOT = f"s3a://lake/clickstream-{PY}-{WORKER}" if WORKER else None
if LAKE_ROOT:
    os.environ["CLICKSTREAM__STORAGE__LAKE_ROOT"] = LAKE_ROOT  # for the jobs tests start

PROJECT_DIR = Path(__file__).resolve().parent.parent
SPARK_SETTINGS = "CLICKSTREAM__SPARK__"
# settings that name files; conf/local*.toml gives them relative to the project root
PATH_KEYS = (
    "secrets.file",
    "secrets.vault_ca_file",
    "kafka.ssl_truststore",
    "kafka.ssl_ca_pem",
    "spark.jars_dir",
)


def config_for_tests(env: str = "local") -> Config:
    """The env's config as the tests run it: local[2], 2 shuffle partitions, the tests' JIT
    options, and every path rooted at the project (whatever the working folder). Spark settings
    from the environment apply (`make lane`: its jars, no class archive); no others do."""
    environ = {k: v for k, v in os.environ.items() if k.startswith(SPARK_SETTINGS)}
    overrides = [
        "spark.master=local[2]",
        "spark.shuffle_partitions=2",
        f'spark.java_options="{TEST_JAVA_OPTIONS}"',
    ]
    if LAKE_ROOT:
        overrides.append(f'storage.lake_root="{LAKE_ROOT}"')
    cfg = load_config(env, overrides, environ)
    for key in PATH_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value and not Path(value).is_absolute():
            overrides.append(f'{key}="{PROJECT_DIR / value}"')
    return load_config(env, overrides, environ)


@pytest.fixture(scope="session")
def local_config() -> Config:
    return config_for_tests("local")


@pytest.fixture(scope="session")
def local_secrets() -> Secrets:
    """None: unit tests need none (tests/integration/conftest.py gives the stack's)."""
    return Secrets({}, "none")


@pytest.fixture(scope="session")
def spark(
    local_config: Config, local_secrets: Secrets, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SparkSession]:
    """One local session for the run, built as the jobs build theirs, with the resolved jars
    when set-up has fetched them and its warehouse in a temporary folder."""
    cfg = local_config
    spark_cfg = cfg.spark.model_copy(
        update={
            "jars_dir": cfg.spark.jars_dir if Path(cfg.spark.jars_dir or "").is_dir() else None,
            "conf": {
                **cfg.spark.conf,
                "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("spark-warehouse")),
            },
        }
    )
    session = build_spark(cfg.model_copy(update={"spark": spark_cfg}), local_secrets)
    yield session
    session.stop()
