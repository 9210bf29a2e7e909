"""The local sessions' Python worker daemon: workers import pyspark from its installed package,
so PySpark's per-task `importlib.invalidate_caches()` no longer re-reads Spark's archives."""

from __future__ import annotations

import os
import sys

import pyspark
from pyspark.sql import SparkSession

from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.python_daemon import is_spark_archive, path_without_spark_archives
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.core.spark import session_conf

SPARK_HOME = os.path.dirname(pyspark.__file__)
ZIPS = [
    f"{SPARK_HOME}/python/lib/pyspark.zip",
    f"{SPARK_HOME}/python/lib/py4j-0.10.9.9-src.zip",
    f"{SPARK_HOME}/jars/spark-core_2.13-4.0.0.jar",
]


def test_only_sparks_own_archives_are_dropped():
    users = ["/tmp/userFiles-1/deps.zip", "/opt/lib/helpers.jar", "/root/lib/python311.zip"]
    assert [p for p in ZIPS + users if is_spark_archive(p)] == ZIPS
    site = [p for p in sys.path if p.endswith("site-packages")]
    assert path_without_spark_archives(["/work", *ZIPS, *users, *site]) == ["/work", *users, *site]


def test_the_archives_stay_where_pyspark_is_not_installed_elsewhere():
    path = ["/work", *ZIPS, "/nowhere/site-packages"]
    assert path_without_spark_archives(path) == path


def test_a_local_sessions_workers_import_pyspark_from_its_package(spark: SparkSession):
    def worker_path(rows):  # a Python task's own view
        for _ in rows:
            pass
        archives = [p for p in sys.path_importer_cache if ".zip" in p or ".jar" in p]
        yield (pyspark.__file__, [p for p in sys.path if is_spark_archive(p)], archives)

    (origin, on_path, importers), *_ = (
        spark.sparkContext.parallelize([1], 1).mapPartitions(worker_path).collect()
    )
    assert origin == pyspark.__file__ and not origin.startswith(tuple(ZIPS))
    assert on_path == [] and importers == []


def test_the_daemon_is_a_local_sessions_only(local_config: Config):
    secrets = Secrets({}, "none")
    key = "spark.python.daemon.module"
    assert session_conf(local_config, secrets)[key] == "clickstream_pipeline.core.python_daemon"
    off = local_config.model_copy(
        update={"spark": local_config.spark.model_copy(update={"python_daemon": False})}
    )
    assert key not in session_conf(off, secrets)
    cluster = local_config.model_copy(
        update={"spark": local_config.spark.model_copy(update={"master": "spark://h:7077"})}
    )
    assert key not in session_conf(cluster, secrets)
