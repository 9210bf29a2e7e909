"""Bulk-load lab-format CSV files into the events table with parallel COPY.

Run: `clickstream-load --env local` (installed),
or `spark-submit jobs/load.py --env local`.
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
        "clickstream-load",
        "Bulk-load lab-format CSV files into the events table with parallel COPY.",
    )


def run(args: argparse.Namespace) -> int:
    log.error("clickstream-load is not built yet (issue #6)")
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
