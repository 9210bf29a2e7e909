"""Shared fixtures: one SparkSession for the whole run, built as the jobs build theirs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from clickstream_pipeline.config import Config, load_config
from clickstream_pipeline.secrets import Secrets, resolve_secrets
from clickstream_pipeline.spark import build_spark

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

PROJECT_DIR = Path(__file__).resolve().parent.parent
LOCAL_SECRETS = (
    "database",
    "kafka_server",
    "kafka_connection_string",
    "s3_access_key",
    "s3_secret_key",
    "kafka_truststore_password",
)


def config_for_tests(env: str = "local") -> Config:
    """The env's config as the tests run it: local[2], 2 shuffle partitions."""
    os.chdir(PROJECT_DIR)  # conf/local*.toml paths are relative to the project root
    return load_config(env, ["spark.master=local[2]", "spark.shuffle_partitions=2"], environ={})


@pytest.fixture(scope="session")
def local_config() -> Config:
    return config_for_tests("local")


@pytest.fixture(scope="session")
def local_secrets(local_config: Config) -> Secrets:
    """The stack's secrets when `make up` has run, else none (unit tests need none)."""
    if not Path(local_config.secrets.file or "").is_file():
        return Secrets({}, "none")
    return resolve_secrets(local_config.secrets, optional=LOCAL_SECRETS)


@pytest.fixture(scope="session")
def spark(local_config: Config, local_secrets: Secrets) -> Iterator[SparkSession]:
    """Local session with the resolved jars when present (integration), plain otherwise."""
    cfg = local_config
    if not Path(cfg.spark.jars_dir or "").is_dir():
        cfg = cfg.model_copy(update={"spark": cfg.spark.model_copy(update={"jars_dir": None})})
    session = build_spark(cfg, local_secrets)
    yield session
    session.stop()
