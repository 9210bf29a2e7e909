from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import SecretStr
from pyspark.sql import SparkSession

from clickstream_pipeline.core.config import LATE_C2_COMPILES, Config, StorageConfig, load_config
from clickstream_pipeline.core.errors import SparkSetupError
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.core.spark import (
    ARROW_MAX_BYTES_PER_BATCH,
    ARROW_NO_BYTE_BOUND,
    arrow_batches_bounded,
    arrow_batches_by_rows,
    session_conf,
    session_conf_set,
    storage_conf,
)


def secrets(**values: str) -> Secrets:
    return Secrets({k: SecretStr(v) for k, v in values.items()}, "test")


def test_s3a_settings_for_an_s3_compatible_endpoint():
    conf = storage_conf(
        StorageConfig(s3_endpoint="http://127.0.0.1:59000"),
        secrets(s3_access_key="AK", s3_secret_key="SK"),
    )
    assert conf["fs.s3a.endpoint"] == "http://127.0.0.1:59000"
    assert conf["fs.s3a.path.style.access"] == "true"
    assert conf["fs.s3a.connection.ssl.enabled"] == "false"
    assert (conf["fs.s3a.access.key"], conf["fs.s3a.secret.key"]) == ("AK", "SK")


def test_adls_service_principal_oauth_as_the_lab_notebook_did():
    conf = storage_conf(
        StorageConfig(adls_auth="service_principal"),
        secrets(adls_account_name="acct", sp_client_id="id", sp_client_key="key", tenant_id="t"),
    )
    host = "acct.dfs.core.windows.net"
    assert conf[f"fs.azure.account.auth.type.{host}"] == "OAuth"
    assert conf[f"fs.azure.account.oauth2.client.id.{host}"] == "id"
    assert conf[f"fs.azure.account.oauth2.client.endpoint.{host}"] == (
        "https://login.microsoftonline.com/t/oauth2/token"
    )


def test_adls_account_key_and_missing_secrets():
    conf = storage_conf(
        StorageConfig(adls_auth="account_key"), secrets(adls_account_name="a", adls_account_key="k")
    )
    assert conf == {"fs.azure.account.key.a.dfs.core.windows.net": "k"}
    with pytest.raises(SparkSetupError, match="client id"):
        storage_conf(StorageConfig(adls_auth="service_principal"), secrets(adls_account_name="a"))


def test_local_session_gets_every_resolved_jar_on_its_class_path(tmp_path: Path):
    for name in ("b.jar", "a.jar", "notes.txt"):
        (tmp_path / name).write_text("")
    cfg = load_config("local", [f"spark.jars_dir={tmp_path}"], environ={})
    conf = session_conf(cfg, secrets())
    assert conf["spark.driver.extraClassPath"] == f"{tmp_path / 'a.jar'}:{tmp_path / 'b.jar'}"
    assert "spark.jars" not in conf
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:59000"


def test_missing_jars_folder_says_how_to_fix_it(tmp_path: Path):
    cfg = load_config("local", [f"spark.jars_dir={tmp_path / 'none'}"], environ={})
    with pytest.raises(SparkSetupError, match="make jars"):
        session_conf(cfg, secrets())


def test_a_cluster_master_gets_the_jars_as_spark_jars(tmp_path: Path):
    (tmp_path / "a.jar").write_text("")
    cfg = load_config(
        "local", [f"spark.jars_dir={tmp_path}", "spark.master=spark://host:7077"], environ={}
    )
    conf = session_conf(cfg, secrets())
    assert conf["spark.jars"] == str(tmp_path / "a.jar")
    assert "spark.driver.extraClassPath" not in conf


def test_a_local_jvm_compiles_with_c2_late_and_a_cluster_keeps_its_own_options(tmp_path: Path):
    (tmp_path / "a.jar").write_text("")
    local = load_config("local", [f"spark.jars_dir={tmp_path}"], environ={})
    assert session_conf(local, secrets())["spark.driver.extraJavaOptions"] == LATE_C2_COMPILES
    cleared = load_config("local", [f"spark.jars_dir={tmp_path}", 'spark.java_options=""'], {})
    assert "spark.driver.extraJavaOptions" not in session_conf(cleared, secrets())
    cluster = load_config(
        "local", [f"spark.jars_dir={tmp_path}", "spark.master=spark://host:7077"], environ={}
    )
    assert "spark.driver.extraJavaOptions" not in session_conf(cluster, secrets())


def test_the_session_s_jvm_runs_with_the_options(spark: SparkSession, local_config: Config):
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = list(runtime.getInputArguments())
    configured = local_config.spark.java_options.split()  # the tests' own (tests/conftest.py)
    assert configured and all(option in arguments for option in configured)


def test_arrow_batches_are_bounded_by_rows_unless_config_sets_bytes(tmp_path: Path):
    (tmp_path / "a.jar").write_text("")
    cfg = load_config("local", [f"spark.jars_dir={tmp_path}"], environ={})
    assert session_conf(cfg, secrets())[ARROW_MAX_BYTES_PER_BATCH] == ARROW_NO_BYTE_BOUND
    mine = f'spark.conf={{"{ARROW_MAX_BYTES_PER_BATCH}" = "64m"}}'
    cfg = load_config("local", [f"spark.jars_dir={tmp_path}", mine], environ={})
    assert session_conf(cfg, secrets())[ARROW_MAX_BYTES_PER_BATCH] == "64m"


def _batch_sizes(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield pa.RecordBatch.from_pydict({"rows": [b.num_rows for b in batches]})


def test_a_running_session_gets_the_row_bound_and_keeps_a_byte_bound_it_has(spark: SparkSession):
    try:
        spark.conf.unset(ARROW_MAX_BYTES_PER_BATCH)
        arrow_batches_by_rows(spark)  # a cluster's session, where the job sets nothing else
        assert spark.conf.get(ARROW_MAX_BYTES_PER_BATCH) == ARROW_NO_BYTE_BOUND
        rows = spark.range(0, 25_000, 1, 1).selectExpr("repeat('x', 100) AS value")
        sizes = [r["rows"] for r in rows.mapInArrow(_batch_sizes, "rows long").collect()]
        assert sizes == [10_000, 10_000, 5_000]  # spark.sql.execution.arrow.maxRecordsPerBatch
        spark.conf.set(ARROW_MAX_BYTES_PER_BATCH, "1m")
        arrow_batches_by_rows(spark)
        assert spark.conf.get(ARROW_MAX_BYTES_PER_BATCH) == "1m"
    finally:
        spark.conf.set(ARROW_MAX_BYTES_PER_BATCH, ARROW_NO_BYTE_BOUND)


def test_the_ingest_bounds_arrow_batches_by_bytes_too(spark: SparkSession):
    try:
        spark.conf.set(ARROW_MAX_BYTES_PER_BATCH, ARROW_NO_BYTE_BOUND)  # the session's default
        arrow_batches_bounded(spark, 1 << 20)
        rows = spark.range(0, 100, 1, 1).selectExpr("repeat('x', 100000) AS value")
        sizes = [r["rows"] for r in rows.mapInArrow(_batch_sizes, "rows long").collect()]
        assert len(sizes) > 5 and max(sizes) <= 11 and sum(sizes) == 100  # 1 MiB: 10 or 11
        spark.conf.set(ARROW_MAX_BYTES_PER_BATCH, "4m")
        arrow_batches_bounded(spark, 1 << 20)  # a bound the session sets stays
        assert spark.conf.get(ARROW_MAX_BYTES_PER_BATCH) == "4m"
        spark.conf.unset(ARROW_MAX_BYTES_PER_BATCH)
        arrow_batches_bounded(spark, 0)
        assert spark.conf.get(ARROW_MAX_BYTES_PER_BATCH) == ARROW_NO_BYTE_BOUND
    finally:
        spark.conf.set(ARROW_MAX_BYTES_PER_BATCH, ARROW_NO_BYTE_BOUND)


def test_a_setting_made_for_a_block_is_restored_after_it_even_when_it_raises(spark: SparkSession):
    key = "spark.sql.streaming.checkpointFileManagerClass"  # one the ingest job sets this way
    spark.conf.unset(key)
    with session_conf_set(spark, key, "a.Manager"):
        assert spark.conf.get(key) == "a.Manager"
    assert spark.conf.get(key, None) is None
    spark.conf.set(key, "the.Users")
    try:
        with pytest.raises(RuntimeError), session_conf_set(spark, key, "a.Manager"):
            raise RuntimeError("start failed")
        assert spark.conf.get(key) == "the.Users"
        with session_conf_set(spark, key, None):  # nothing to set: left as it is
            assert spark.conf.get(key) == "the.Users"
    finally:
        spark.conf.unset(key)
