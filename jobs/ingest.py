"""Ingest job: stream clickstream events from Kafka into the events table, exactly once.

Run: `clickstream-ingest --env local` (installed),
or `spark-submit jobs/ingest.py --env local`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from clickstream_pipeline.core.cli import (
    EXIT_FAILED,
    config_from_args,
    job_parser,
    run_job,
    stop_requests,
)

log = logging.getLogger(__name__)


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


STOP_POLL_S = 1  # how soon a stop request is seen
MAX_RESTARTS = 3  # after a failure known to leave nothing undone (a Spark bug)


def run(args: argparse.Namespace) -> int:
    from pyspark.errors import StreamingQueryException

    from clickstream_pipeline.ingest.metrics import flush_progress
    from clickstream_pipeline.ingest.session import open_spark_job
    from clickstream_pipeline.ingest.stream import failed_after_its_batch, start_ingest
    from clickstream_pipeline.warehouse.rollup_runner import drain

    overrides = list(args.overrides)
    if args.available_now:
        overrides.append("ingest.trigger=available_now")
    cfg = config_from_args(argparse.Namespace(**{**vars(args), "overrides": overrides}))
    with open_spark_job(cfg) as job:
        query = start_ingest(job.spark, job.cfg, job.secrets)
        restarts = 0
        try:
            with stop_requests() as stop:
                while True:
                    try:
                        if query.awaitTermination(STOP_POLL_S):
                            break
                    except StreamingQueryException as exc:
                        if not failed_after_its_batch(exc) or restarts >= MAX_RESTARTS:
                            raise
                        restarts += 1
                        log.warning(
                            "restarting %s after Spark's SPARK-57438", cfg.ingest.query_name
                        )
                        query = start_ingest(job.spark, job.cfg, job.secrets)
                    if stop.is_set():
                        log.info("stopping %s", cfg.ingest.query_name)
                        query.stop()
        finally:
            drain(cfg.ingest.query_name, cfg.ingest.rollup_drain_timeout_s)
        flush_progress(job.spark)
        if query.exception() is not None:
            log.error("query %s failed: %s", cfg.ingest.query_name, query.exception())
            return EXIT_FAILED
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
