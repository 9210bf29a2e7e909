"""Bulk-load lab-format CSV files into the events table with parallel COPY.

The lab's `\\COPY events(customer_id,...) FROM data/N.csv WITH (FORMAT CSV, HEADER TRUE)`,
one file per transaction, `--streams` connections at a time. Write test files with
`clickstream-produce --to-csv DIR`.

Run: `clickstream-load --env local data/` (installed),
or `spark-submit jobs/load.py --env local data/` (no Spark is started).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from clickstream_pipeline.core.cli import (
    EXIT_OK,
    add_metrics_port_flag,
    add_progress_flag,
    config_from_args,
    job_parser,
    run_job,
)
from clickstream_pipeline.core.errors import ConfigError
from clickstream_pipeline.core.fields import EVENTS_SCHEMA, EVENTS_TABLE

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = job_parser(
        "clickstream-load",
        "Bulk-load lab-format CSV files into the events table with parallel COPY.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="CSV files, or folders of *.csv")
    p.add_argument(
        "--streams", type=int, default=2, help="parallel COPY streams, one connection each (2)"
    )
    p.add_argument("--table", help=f"target table in schema {EVENTS_SCHEMA} (default: events)")
    add_progress_flag(p)
    add_metrics_port_flag(p)
    return p


def run(args: argparse.Namespace) -> int:
    from clickstream_pipeline.traffic.generator import csv_paths
    from clickstream_pipeline.traffic.loader import CsvHeaderError, load_files
    from clickstream_pipeline.warehouse.database import configured_params

    cfg = config_from_args(args)
    if args.streams < 1:
        raise ConfigError("--streams must be >= 1")
    try:
        paths = csv_paths(args.paths)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    params = configured_params(cfg)
    table = args.table or EVENTS_TABLE
    try:
        result = load_files(
            params,
            paths,
            streams=args.streams,
            schema=EVENTS_SCHEMA,
            table=table,
            progress=args.progress,
            application_name=cfg.database.application_name,
            metrics_port=args.metrics_port,
        )
    except CsvHeaderError as exc:
        raise ConfigError(str(exc)) from None
    print(result.summary(f"{EVENTS_SCHEMA}.{table}"))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
