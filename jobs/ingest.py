"""Ingest job: stream clickstream events from Kafka into the events table, exactly once.

Run: `clickstream-ingest --env local` (installed),
or `spark-submit jobs/ingest.py --env local`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from clickstream_pipeline.cli import EXIT_FAILED, config_from_args, job_parser, run_job

log = logging.getLogger(__name__)

REQUIRED_SECRETS = ("database",)
OPTIONAL_SECRETS = (
    "kafka_server",
    "kafka_connection_string",
    "kafka_truststore_password",
    "s3_access_key",
    "s3_secret_key",
    "adls_account_name",
    "adls_account_key",
    "sp_client_id",
    "sp_client_key",
    "tenant_id",
)


def parser() -> argparse.ArgumentParser:
    p = job_parser(
        "clickstream-ingest", "Stream clickstream events from Kafka into events, exactly once."
    )
    p.add_argument(
        "--available-now",
        action="store_true",
        help="process what is on the topics now, then stop (backfills, tests)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from clickstream_pipeline.config import resolve_storage_paths
    from clickstream_pipeline.ingest import start_ingest
    from clickstream_pipeline.metrics import flush_progress, register_progress_logger
    from clickstream_pipeline.secrets import resolve_secrets
    from clickstream_pipeline.spark import build_spark

    overrides = list(args.overrides)
    if args.available_now:
        overrides.append("ingest.trigger=available_now")
    cfg = config_from_args(argparse.Namespace(**{**vars(args), "overrides": overrides}))
    secrets = resolve_secrets(cfg.secrets, REQUIRED_SECRETS, OPTIONAL_SECRETS)
    cfg = resolve_storage_paths(cfg, secrets)
    spark = build_spark(cfg, secrets)
    register_progress_logger(spark)
    query = start_ingest(spark, cfg, secrets)
    try:
        query.awaitTermination()
    except KeyboardInterrupt:
        log.info("stopping %s", cfg.ingest.query_name)
        query.stop()
    flush_progress(spark)
    if query.exception() is not None:
        log.error("query %s failed: %s", cfg.ingest.query_name, query.exception())
        return EXIT_FAILED
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
