"""Dashboard queries: list the lab's named queries, or run them and print the results.

Run: `clickstream-query list`, `clickstream-query run events_last_15_minutes`,
`clickstream-query run --all` (installed), or `spark-submit jobs/query.py run --all` (no Spark).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clickstream_pipeline.core.cli import config_from_args, job_parser, run_job


def parser() -> argparse.ArgumentParser:
    p = job_parser("clickstream-query", "List or run the lab's dashboard queries.")
    p.add_argument("action", choices=["list", "show", "run"])
    p.add_argument("names", nargs="*", help="query names (see `list`)")
    p.add_argument("--all", action="store_true", help="every query")
    return p


def run(args: argparse.Namespace) -> int:
    from clickstream_pipeline.warehouse.database import configured_params, connected
    from clickstream_pipeline.warehouse.queries import get_query, load_queries, print_queries

    queries = load_queries()
    if args.action == "list":
        for query in queries.values():
            print(f"{query.name:40} {query.description}")
        return 0
    chosen = list(queries.values()) if args.all else [get_query(n) for n in args.names]
    if not chosen:
        print("name one or more queries, or --all", file=sys.stderr)
        return 2
    if args.action == "show":
        for query in chosen:
            print(query.sql)
        return 0
    cfg = config_from_args(args)
    with connected(cfg, configured_params(cfg)) as conn:
        print_queries(conn, chosen)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
