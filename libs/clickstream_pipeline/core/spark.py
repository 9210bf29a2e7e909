"""The SparkSession builder: resolved jars for local runs, the cluster's session elsewhere.

Locally (`spark.master` set in config) the session gets every jar from `spark.jars_dir` (resolved
by Maven at set-up, so no Ivy download at run time), Delta's extensions, and the object-store
settings. Under a `local[...]` master the jars go on the JVM's class path, and the JVM maps its
classes from a class-data-sharing archive (`class_archive.py`). On Databricks or under
`spark-submit --master ...` the running session is reused and only the storage settings are
applied to it. With `spark.remote` the job is a Spark Connect client (`spark_connect.py`).
"""

from __future__ import annotations

import atexit
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pyspark
from pyspark import SparkContext
from pyspark.sql import SparkSession

from clickstream_pipeline.core import class_archive, python_daemon
from clickstream_pipeline.core.config import Config, SparkConfig, StorageConfig
from clickstream_pipeline.core.errors import SparkSetupError
from clickstream_pipeline.core.secrets import Secrets

log = logging.getLogger(__name__)

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

# Spark 4.0 (SPARK-51316) sizes the Arrow batch it hands a Python worker after every row, and
# for mapInArrow's struct input that check walks every column vector: a quarter of the ingest
# JVM's task time here. Int.MaxValue turns the check off (Spark's own switch); batches stay
# bounded by spark.sql.execution.arrow.maxRecordsPerBatch rows (10,000). The ingest turns it
# back on with its own bound (`arrow_batches_bounded`): 10,000 messages of up to 1 MiB each
# are too many bytes for one batch.
ARROW_MAX_BYTES_PER_BATCH = "spark.sql.execution.arrow.maxBytesPerBatch"
ARROW_NO_BYTE_BOUND = str(2**31 - 1)


def arrow_batches_by_rows(spark: SparkSession) -> None:
    """Bound the Arrow batches of Python tasks by rows only, unless the session sets bytes."""
    if spark.conf.get(ARROW_MAX_BYTES_PER_BATCH, None) is None:
        spark.conf.set(ARROW_MAX_BYTES_PER_BATCH, ARROW_NO_BYTE_BOUND)


def arrow_batches_bounded(spark: SparkSession, max_bytes: int) -> None:
    """Bound the Arrow batches of Python tasks by `max_bytes` as well as by rows (0: by rows
    only), unless the session sets a byte bound of its own."""
    if not max_bytes:
        arrow_batches_by_rows(spark)
    elif spark.conf.get(ARROW_MAX_BYTES_PER_BATCH, None) in (None, ARROW_NO_BYTE_BOUND):
        spark.conf.set(ARROW_MAX_BYTES_PER_BATCH, str(max_bytes))


@contextmanager
def session_conf_set(spark: SparkSession, key: str, value: str | None) -> Iterator[None]:
    """`key` set to `value` on the session inside the block (None: left as it is), then restored."""
    if value is None:
        yield
        return
    kept = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if kept is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, kept)


# Java properties escapes (java.util.Properties.load), for keys and values alike
_PROPERTIES_ESCAPES = str.maketrans(
    {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f", "=": "\\=",
     ":": "\\:", "#": "\\#", "!": "\\!", " ": "\\ "}
)  # fmt: skip


@contextmanager
def private_properties_file(conf: Mapping[str, str]) -> Iterator[Path]:
    """`conf` as a Java properties file (spark-submit's `--properties-file`) that only this user
    can read, in a private temporary folder removed with it after the block: settings that carry
    secrets reach a JVM this way, never on its command line."""
    folder = Path(tempfile.mkdtemp(prefix="clickstream-spark-"))  # mode 700
    path = folder / "spark.properties"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(
                f"{k.translate(_PROPERTIES_ESCAPES)}={v.translate(_PROPERTIES_ESCAPES)}\n"
                for k, v in conf.items()
            )
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def resolved_jars(jars_dir: str | Path) -> list[str]:
    folder = Path(jars_dir)
    jars = sorted(str(p.resolve()) for p in folder.glob("*.jar"))
    if not jars:
        raise SparkSetupError(f"no jars in {folder}: run `make jars` (or scripts/setup.sh)")
    return jars


def storage_conf(storage: StorageConfig, secrets: Secrets) -> dict[str, str]:
    """Hadoop settings (without the `spark.hadoop.` prefix) for s3a:// and abfss:// paths."""
    conf: dict[str, str] = {}
    if storage.s3_endpoint:
        conf.update(
            {
                "fs.s3a.endpoint": storage.s3_endpoint,
                "fs.s3a.endpoint.region": "us-east-1",
                "fs.s3a.path.style.access": str(storage.s3_path_style).lower(),
                "fs.s3a.connection.ssl.enabled": str(storage.s3_ssl).lower(),
            }
        )
    access, secret = secrets.get("s3_access_key"), secrets.get("s3_secret_key")
    if access is not None and secret is not None:
        conf.update(
            {
                "fs.s3a.aws.credentials.provider": (
                    "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
                ),
                "fs.s3a.access.key": access.get_secret_value(),
                "fs.s3a.secret.key": secret.get_secret_value(),
            }
        )
    if storage.adls_auth != "none":
        conf.update(_adls_conf(storage, secrets))
    return conf


def _adls_conf(storage: StorageConfig, secrets: Secrets) -> dict[str, str]:
    account_secret = secrets.get("adls_account_name")
    if account_secret is None:
        raise SparkSetupError(
            "storage.adls_auth is set but the ADLS account name secret is missing"
        )
    host = f"{account_secret.get_secret_value()}.dfs.core.windows.net"
    if storage.adls_auth == "account_key":
        key = secrets.get("adls_account_key")
        if key is None:
            raise SparkSetupError(
                "storage.adls_auth = account_key needs the ADLS account key secret"
            )
        return {f"fs.azure.account.key.{host}": key.get_secret_value()}
    client_id, client_key, tenant = (
        secrets.get("sp_client_id"),
        secrets.get("sp_client_key"),
        secrets.get("tenant_id"),
    )
    if client_id is None or client_key is None or tenant is None:
        raise SparkSetupError(
            "storage.adls_auth = service_principal needs the client id, client key "
            "and tenant secrets"
        )
    return {
        f"fs.azure.account.auth.type.{host}": "OAuth",
        f"fs.azure.account.oauth.provider.type.{host}": (
            "org.apache.hadoop.fs.azurebfs.oauth2.ClientCredsTokenProvider"
        ),
        f"fs.azure.account.oauth2.client.id.{host}": client_id.get_secret_value(),
        f"fs.azure.account.oauth2.client.secret.{host}": client_key.get_secret_value(),
        f"fs.azure.account.oauth2.client.endpoint.{host}": (
            f"https://login.microsoftonline.com/{tenant.get_secret_value()}/oauth2/token"
        ),
    }


def is_local(spark: SparkConfig) -> bool:
    return (spark.master or "").startswith("local")


def class_archive_option(conf: dict[str, str], spark: SparkConfig) -> str | None:
    """The JVM options for the class archive of a session started with `conf`, if any."""
    jars = conf.get("spark.driver.extraClassPath")
    if not (spark.class_archive and jars and spark.jars_dir):
        return None
    spark_jars = sorted(str(p) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar"))
    folder = Path(spark.jars_dir).resolve().parent / "class-archive"
    return class_archive.java_option(folder, jars.split(os.pathsep) + spark_jars)


def _with_class_archive(conf: dict[str, str], spark: SparkConfig) -> None:
    """Add the class archive's JVM options; a training JVM is waited for when Python exits."""
    option = class_archive_option(conf, spark)
    if option is None:
        return
    key = "spark.driver.extraJavaOptions"
    conf[key] = f"{conf[key]} {option}" if conf.get(key) else option
    if "ArchiveClassesAtExit" in option:
        atexit.register(_wait_for_archive)


def _wait_for_archive() -> None:
    """Let the JVM write its class archive before this process exits (it exits on EOF)."""
    proc = getattr(SparkContext._gateway, "proc", None)  # stays set after stop()
    if isinstance(proc, subprocess.Popen) and proc.stdin is not None:
        proc.stdin.close()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            log.warning("the JVM did not finish its class archive in 120 s")


def session_conf(cfg: Config, secrets: Secrets) -> dict[str, str]:
    """Everything a locally built session is given."""
    conf = {
        "spark.app.name": cfg.spark.app_name,
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.ui.enabled": str(cfg.spark.ui).lower(),
        "spark.ui.showConsoleProgress": "false",  # per-batch log lines instead of a bar
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        **DELTA_CONF,
        ARROW_MAX_BYTES_PER_BATCH: ARROW_NO_BYTE_BOUND,
    }
    if is_local(cfg.spark) and cfg.spark.java_options:
        conf["spark.driver.extraJavaOptions"] = cfg.spark.java_options
    if is_local(cfg.spark) and cfg.spark.python_daemon:
        conf["spark.python.daemon.module"] = python_daemon.__name__
    if cfg.spark.jars_dir and is_local(cfg.spark):
        # one JVM: on its class path the jars load without being copied for the executor
        conf["spark.driver.extraClassPath"] = os.pathsep.join(resolved_jars(cfg.spark.jars_dir))
    elif cfg.spark.jars_dir:
        conf["spark.jars"] = ",".join(resolved_jars(cfg.spark.jars_dir))
    conf.update({f"spark.hadoop.{k}": v for k, v in storage_conf(cfg.storage, secrets).items()})
    conf.update(cfg.spark.conf)
    return conf


def _connect_client(url: str, settings: SparkConfig) -> SparkSession:
    """A Spark Connect client session; jars and storage settings are the server's."""
    spark = SparkSession.builder.remote(url).getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
    log.info("spark %s: client of the Spark Connect server %s", spark.version, url)
    return spark


HADOOP = "spark.hadoop."


@contextmanager
def _submit_args_with(properties: Path) -> Iterator[None]:
    """`--properties-file` added to the spark-submit arguments pyspark starts its JVM with."""
    kept = os.environ.get("PYSPARK_SUBMIT_ARGS")
    args = f"--properties-file {shlex.quote(str(properties))} {kept or 'pyspark-shell'}"
    os.environ["PYSPARK_SUBMIT_ARGS"] = args
    try:
        yield
    finally:
        if kept is None:
            os.environ.pop("PYSPARK_SUBMIT_ARGS", None)
        else:
            os.environ["PYSPARK_SUBMIT_ARGS"] = kept


def build_spark(cfg: Config, secrets: Secrets) -> SparkSession:
    """The session for a job: the running one on a cluster, else a new one.

    Under `spark-submit` (which starts Python with its own JVM) the master and jars come from
    its flags; otherwise `spark.master` and `spark.jars_dir` from config are used.
    """
    if cfg.spark.remote:
        return _connect_client(cfg.spark.remote, cfg.spark)
    active = SparkSession.getActiveSession()
    if active is not None:
        for key, value in storage_conf(cfg.storage, secrets).items():
            active.conf.set(key, value)
            active.sparkContext._jsc.hadoopConfiguration().set(key, value)
        return active
    conf = session_conf(cfg, secrets)
    builder = SparkSession.builder
    launched = "PYSPARK_GATEWAY_PORT" in os.environ or SparkContext._gateway is not None
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # launched by spark-submit
        conf.pop("spark.jars", None)
        conf.pop("spark.driver.host", None)
        conf.pop("spark.driver.bindAddress", None)
    elif cfg.spark.master:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder = builder.master(cfg.spark.master)
        _with_class_archive(conf, cfg.spark)
    # pyspark starts a new JVM with every builder setting on spark-submit's command line: the
    # storage settings (keys among them) go in a private properties file instead
    hidden = {} if launched else {k: conf.pop(k) for k in list(conf) if k.startswith(HADOOP)}
    for key, value in conf.items():
        builder = builder.config(key, value)
    if launched:  # settings reach the running JVM over py4j
        spark = builder.getOrCreate()
    else:
        with private_properties_file(hidden) as properties, _submit_args_with(properties):
            spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark %s started: master %s", spark.version, spark.sparkContext.master)
    return spark
