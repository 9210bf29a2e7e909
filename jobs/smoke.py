"""Smoke job: produce lab messages to a fresh topic and ingest them into events with the real
ingest query (available-now), checkpoint on s3a://.

Run: `clickstream-smoke --env local` (installed),
or `spark-submit jobs/smoke.py --env local`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clickstream_pipeline.core.cli import config_from_args, job_parser, run_job


def parser() -> argparse.ArgumentParser:
    p = job_parser(
        "clickstream-smoke",
        "Kafka -> Spark -> events: a small run of the ingest on a fresh topic, s3a:// checkpoint",
    )
    p.add_argument("--messages", type=int, default=1000, help="messages to produce (default 1000)")
    return p


def run(args: argparse.Namespace) -> int:
    from clickstream_pipeline.ingest.session import open_spark_job
    from clickstream_pipeline.ingest.smoke import run_smoke

    with open_spark_job(config_from_args(args), progress_log=False) as job:
        result = run_smoke(job.spark, job.cfg, job.secrets, messages=args.messages)
    print(
        f"smoke {result.run_id}: sent {result.sent} messages to topic {result.topic}; "
        f"{result.rows_in_db} rows of it in events "
        f"({result.distinct_offsets} distinct Kafka offsets); checkpoint {result.checkpoint}; "
        f"{result.seconds}s"
    )
    return 0 if result.rows_in_db == result.sent == result.distinct_offsets else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
