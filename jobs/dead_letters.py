"""Dead letters: list them by reason, or replay them after a fix.

Run: `clickstream-dead-letters list|replay --env local` (installed),
or `spark-submit jobs/dead_letters.py list --env local`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clickstream_pipeline.cli import config_from_args, job_parser, run_job
from clickstream_pipeline.jobs.ingest import OPTIONAL_SECRETS, REQUIRED_SECRETS


def parser() -> argparse.ArgumentParser:
    p = job_parser("clickstream-dead-letters", "List or replay dead-lettered records.")
    p.add_argument(
        "action",
        choices=["list", "replay"],
        help="list: counts by reason and a "
        "sample; replay: re-validate with today's rules and write the valid ones",
    )
    p.add_argument("--reason", help="only dead letters with this reason")
    p.add_argument("--limit", type=int, default=20, help="rows to show with list (default 20)")
    return p


def run(args: argparse.Namespace) -> int:
    import pyspark.sql.functions as F

    from clickstream_pipeline import dead_letters
    from clickstream_pipeline.config import resolve_storage_paths
    from clickstream_pipeline.ingest import replay_dead_letters
    from clickstream_pipeline.secrets import resolve_secrets
    from clickstream_pipeline.spark import build_spark

    cfg = config_from_args(args)
    secrets = resolve_secrets(cfg.secrets, REQUIRED_SECRETS, OPTIONAL_SECRETS)
    cfg = resolve_storage_paths(cfg, secrets)
    spark = build_spark(cfg, secrets)
    if args.action == "replay":
        report = replay_dead_letters(spark, cfg, secrets, args.reason)
        print(
            f"replayed {report.considered}: written {report.written}, already written "
            f"{report.duplicates}, still dead {sum(report.still_dead.values())} "
            f"{report.still_dead or ''}".rstrip()
        )
        return 0
    letters = dead_letters.read(spark, cfg.dead_letter_path).filter(
        F.col("query_name") == cfg.ingest.query_name
    )
    if args.reason:
        letters = letters.filter(F.col("reason") == args.reason)
    counts = letters.groupBy("reason").count().orderBy(F.desc("count"), "reason").collect()
    print(f"dead letters of {cfg.ingest.query_name} in {cfg.dead_letter_path} (not replayed):")
    for row in counts:
        print(f"{row['count']:>10}  {row['reason']}")
    for row in letters.orderBy("topic", "partition", "offset").limit(args.limit).collect():
        raw = bytes(row["raw_value"] or b"")
        preview = raw[:80].decode("utf-8", "backslashreplace").encode("unicode_escape").decode()
        print(f"{row['topic']}/{row['partition']}@{row['offset']}  {row['reason']}  {preview}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
