"""Dead letters: list them by reason, replay them after a fix, or compact their table.

Run: `clickstream-dead-letters list|replay|compact --env local` (installed),
or `spark-submit jobs/dead_letters.py list --env local`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clickstream_pipeline.core.cli import config_from_args, job_parser, run_job


def parser() -> argparse.ArgumentParser:
    p = job_parser("clickstream-dead-letters", "List, replay or compact dead-lettered records.")
    p.add_argument(
        "action",
        choices=["list", "replay", "compact"],
        help="list: counts by reason and a sample; replay: re-validate with today's rules and "
        "write the valid ones; compact: rewrite the table's small files into few and delete "
        "unreferenced files older than --retain-hours (Delta's OPTIMIZE and VACUUM)",
    )
    p.add_argument("--reason", help="only dead letters with this reason")
    p.add_argument("--limit", type=int, default=20, help="rows to show with list (default 20)")
    p.add_argument(
        "--retain-hours",
        type=float,
        default=168.0,
        help="compact: keep unreferenced files this long, for readers and time travel "
        "(default 168, Delta's own minimum unless its retention check is turned off)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from clickstream_pipeline.ingest import dead_letters
    from clickstream_pipeline.ingest.session import open_spark_job
    from clickstream_pipeline.ingest.stream import replay_dead_letters

    with open_spark_job(config_from_args(args), progress_log=False) as job:
        cfg, name, path = job.cfg, job.cfg.ingest.query_name, job.cfg.dead_letter_path
        if args.action == "compact":
            before, after = dead_letters.compact(job.spark, path, args.retain_hours)
            print(
                f"dead letters in {path}: {before} files compacted into {after}; unreferenced "
                f"files older than {args.retain_hours:g} h deleted"
            )
            return 0
        if args.action == "replay":
            report = replay_dead_letters(job.spark, cfg, job.secrets, args.reason)
            print(
                f"replayed {report.considered}: written {report.written}, already written "
                f"{report.duplicates}, still dead {sum(report.still_dead.values())} "
                f"{report.still_dead or ''}".rstrip()
            )
            return 0
        print(f"dead letters of {name} in {path} (not replayed):")
        for reason, count in dead_letters.summary(job.spark, path, name, args.reason):
            print(f"{count:>10}  {reason}")
        for line in dead_letters.sample(job.spark, path, name, args.reason, args.limit):
            print(line)
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
