"""Smoke job: produce lab messages to Kafka, stream them into PostgreSQL, checkpoint on s3a://.

Run: `clickstream-smoke --env local` (installed),
or `spark-submit jobs/smoke.py --env local`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clickstream_pipeline.cli import config_from_args, job_parser, run_job

REQUIRED_SECRETS = ("database",)
OPTIONAL_SECRETS = (
    "kafka_server",
    "kafka_connection_string",
    "s3_access_key",
    "s3_secret_key",
    "kafka_truststore_password",
    "adls_account_name",  # fills {adls_account} in storage paths
)


def parser() -> argparse.ArgumentParser:
    p = job_parser(
        "clickstream-smoke", "Kafka -> Spark -> PostgreSQL smoke run with an s3a:// checkpoint"
    )
    p.add_argument("--messages", type=int, default=1000, help="messages to produce (default 1000)")
    return p


def run(args: argparse.Namespace) -> int:
    from clickstream_pipeline.config import resolve_storage_paths
    from clickstream_pipeline.secrets import resolve_secrets
    from clickstream_pipeline.smoke import run_smoke
    from clickstream_pipeline.spark import build_spark

    cfg = config_from_args(args)
    secrets = resolve_secrets(cfg.secrets, REQUIRED_SECRETS, OPTIONAL_SECRETS)
    cfg = resolve_storage_paths(cfg, secrets)
    spark = build_spark(cfg, secrets)
    result = run_smoke(spark, cfg, secrets, messages=args.messages)
    print(
        f"smoke {result.run_id}: sent {result.sent} messages to topic {result.topic}; "
        f"{result.rows_in_db} rows in PostgreSQL table smoke_events "
        f"({result.distinct_offsets} distinct Kafka offsets); checkpoint {result.checkpoint}; "
        f"{result.seconds}s"
    )
    return 0 if result.rows_in_db == result.sent == result.distinct_offsets else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
