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


def run(args: argparse.Namespace) -> int:
    from clickstream_pipeline.ingest.metrics import flush_progress
    from clickstream_pipeline.ingest.session import open_spark_job
    from clickstream_pipeline.ingest.stream import start_ingest
    from clickstream_pipeline.warehouse.rollup_runner import drain

    overrides = list(args.overrides)
    if args.available_now:
        overrides.append("ingest.trigger=available_now")
    cfg = config_from_args(argparse.Namespace(**{**vars(args), "overrides": overrides}))
    with open_spark_job(cfg) as job:
        query = start_ingest(job.spark, job.cfg, job.secrets)
        try:
            with stop_requests() as stop:
                while not query.awaitTermination(STOP_POLL_S):
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
