"""List or replay dead-lettered records.

Run: `clickstream-dead-letters --env local` (installed),
or `spark-submit jobs/dead_letters.py --env local`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from clickstream_pipeline.cli import EXIT_FAILED, job_parser, run_job

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    return job_parser("clickstream-dead-letters", "List or replay dead-lettered records.")


def run(args: argparse.Namespace) -> int:
    log.error("clickstream-dead-letters is not built yet (issue #5)")
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
