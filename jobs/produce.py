"""Send clickstream events to Kafka: replay lab CSV files or generate synthetic traffic.

Run: `clickstream-produce --env local` (installed),
or `spark-submit jobs/produce.py --env local`.
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
        "clickstream-produce",
        "Send clickstream events to Kafka: replay lab CSV files or generate synthetic traffic.",
    )


def run(args: argparse.Namespace) -> int:
    log.error("clickstream-produce is not built yet (issue #6)")
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
