"""Dashboard job: serve the live dashboard (rollups and pipeline health) on localhost.

Resolves the database secret (a read-only role is enough: sql/roles/dashboard_readonly.sql),
checks the database answers, then serves the page until stopped (Ctrl-C). Needs the wheel's
`dashboard` extra (Dash).

Run: `clickstream-dashboard --env local` (installed), then open http://127.0.0.1:8050/.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clickstream_pipeline.cli import config_from_args, job_parser, run_job
from clickstream_pipeline.errors import SetupError


def positive_seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def parser() -> argparse.ArgumentParser:
    p = job_parser("clickstream-dashboard", "Serve the live clickstream dashboard.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: local)")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument(
        "--refresh-seconds",
        type=positive_seconds,
        default=10.0,
        help="how often the page reloads its panels (default 10)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from clickstream_pipeline.database import ConnectionParams
    from clickstream_pipeline.secrets import resolve_secrets

    try:
        from clickstream_pipeline.dashboard.app import serve
    except ImportError as exc:
        raise SetupError(
            f"the dashboard needs the `dashboard` extra ({exc}): "
            "pip install 'clickstream-pipeline[dashboard]'"
        ) from None
    cfg = config_from_args(args)
    secrets = resolve_secrets(cfg.secrets, ["database"])
    params = ConnectionParams.from_jdbc_url(secrets["database"])
    serve(
        params,
        args.host,
        args.port,
        args.refresh_seconds,
        schema=cfg.database.schema_name,
        connect_timeout=cfg.database.connect_timeout_s,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
