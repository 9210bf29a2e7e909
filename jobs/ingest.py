"""Stream clickstream events from Kafka into the events table, exactly once.

Run: `clickstream-ingest --env local` (installed),
or `spark-submit jobs/ingest.py --env local`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from clickstream_pipeline.cli import EXIT_FAILED, job_parser, run_job

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    return job_parser(
        "clickstream-ingest",
        "Stream clickstream events from Kafka into the events table, exactly once.",
    )


def run(args: argparse.Namespace) -> int:
    log.error("clickstream-ingest is not built yet (issue #5)")
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
