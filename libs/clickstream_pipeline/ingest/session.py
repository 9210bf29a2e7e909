"""The edge every Spark job of the ingest shares (ingest, dead letters, smoke, notebook 2):
secrets resolved once, storage paths filled in, the session, the per-batch progress log."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession

from clickstream_pipeline.core.config import Config, resolve_storage_paths
from clickstream_pipeline.core.secrets import Secrets, resolve_secrets
from clickstream_pipeline.core.spark import build_spark
from clickstream_pipeline.ingest.metrics import ProgressLogger, register_progress_logger

REQUIRED_SECRETS = ("database",)
OPTIONAL_SECRETS = (
    "kafka_server",
    "kafka_connection_string",
    "kafka_truststore_password",
    "s3_access_key",
    "s3_secret_key",
    "adls_account_name",  # fills {adls_account} in storage paths
    "adls_account_key",
    "sp_client_id",
    "sp_client_key",
    "tenant_id",
)


@dataclass(frozen=True)
class SparkJob:
    cfg: Config  # with its storage paths resolved
    secrets: Secrets
    spark: SparkSession
    progress: ProgressLogger | None  # the listener logging each batch, when asked for

    def close(self) -> None:
        """Stop logging progress; a Spark Connect client also ends its session, whose event
        thread would otherwise keep the process alive. A local session ends with Python."""
        if self.progress is not None:
            self.spark.streams.removeListener(self.progress)
        if self.cfg.spark.remote:
            self.spark.stop()

    def __enter__(self) -> SparkJob:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_spark_job(cfg: Config, progress_log: bool = True) -> SparkJob:
    """Resolve secrets and storage paths, build the session, log each batch's progress."""
    secrets = resolve_secrets(cfg.secrets, REQUIRED_SECRETS, OPTIONAL_SECRETS)
    cfg = resolve_storage_paths(cfg, secrets)
    spark = build_spark(cfg, secrets)
    return SparkJob(cfg, secrets, spark, register_progress_logger(spark) if progress_log else None)
