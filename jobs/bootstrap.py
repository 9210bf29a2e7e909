"""Bootstrap job: make a database ready for the pipeline.

Resolves the database secret, connects (TLS as the connection string's `sslmode` says),
applies the shipped migrations (events, rollups, TopN replacements, pg_cron schedules), adds
the columns of the event model (`ingest.model`) to `events` (additive changes only), generates
the model's rollups (backfilling a new one from the events kept), sets how long each table
keeps its rows (the model's `[retention]`) and prints what it did. `--dry-run` prints the SQL
it would run and changes nothing.

Run: `clickstream-bootstrap --env local` (installed),
or `spark-submit jobs/bootstrap.py --env local` (no Spark is started).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from clickstream_pipeline.core.cli import config_from_args, job_parser, run_job

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = job_parser(
        "clickstream-bootstrap",
        "Create or upgrade the database schema (migrations, rollups, schedules).",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the SQL it would run, change nothing"
    )
    p.add_argument(
        "--drop-removed-rollups",
        action="store_true",
        help="drop the rollups the event model no longer names (else they are kept and listed)",
    )
    p.add_argument(
        "--backfill-ids",
        type=int,
        metavar="N",
        help="backfill a new rollup from the events kept in windows of N event ids "
        "(default 500000)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from clickstream_pipeline.core.model import load_model
    from clickstream_pipeline.warehouse import rollups
    from clickstream_pipeline.warehouse.database import (
        configured_params,
        connected,
        server_facts,
    )
    from clickstream_pipeline.warehouse.event_table import apply_model, dry_run_lines, plan_model
    from clickstream_pipeline.warehouse.migrations import (
        load_migrations,
        migrate,
        pending,
        report_lines,
    )
    from clickstream_pipeline.warehouse.retention import (
        apply_retention,
        dry_run_statements,
        plan_retention,
    )

    cfg = config_from_args(args)
    model = load_model(cfg.ingest.model)
    params = configured_params(cfg)
    migrations = load_migrations()
    with connected(cfg, params) as conn:
        print(f"database {params.describe()}: {server_facts(conn)}")
        if args.dry_run:
            todo = pending(conn, migrations)
            conn.rollback()
            print(f"-- dry run: {len(todo)} of {len(migrations)} migrations pending")
            for migration in todo:
                print(
                    f"-- {migration.filename} (sha256 {migration.checksum[:12]})\n{migration.sql}"
                )
            if todo:
                print(f"-- event model {model.name!r}: checked once the migrations have run")
            else:
                print("\n".join(dry_run_lines(conn, plan_model(conn, model))))
                rollup_plan = rollups.plan_rollups(conn, model)
                drop = args.drop_removed_rollups
                print("\n".join(rollups.dry_run_lines(conn, rollup_plan, drop)))
                retention = plan_retention(conn, model.retention, rollup_plan.new)
                print("\n".join(dry_run_statements(conn, retention)))
                conn.rollback()
            return 0
        report = migrate(conn, migrations, cfg.database.citus_shard_count)
        print("\n".join(report_lines(report, conn)))
        plan = apply_model(conn, model)
        added = ", ".join(plan.added)
        print(f"event model {model.name!r}: " + (f"added {added}" if added else "no change"))
        drop = args.drop_removed_rollups
        chunk = args.backfill_ids or rollups.BACKFILL_CHUNK
        generated = rollups.apply_rollups(conn, model, drop_removed=drop, chunk=chunk, say=print)
        print("\n".join(generated.lines(dropped=drop)))
        print("\n".join(apply_retention(conn, model).lines()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
