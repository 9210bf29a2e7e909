"""Dashboard job: serve the live dashboard (rollups and pipeline health) on localhost.

Resolves the database secret (a read-only role is enough: sql/roles/dashboard_readonly.sql),
checks the database answers, then serves the page until stopped (Ctrl-C). With the
`Dashboard-Password` secret every page and callback needs HTTP basic auth (user `--user`); bound
to anything but a loopback address it refuses to start without that secret. Needs the wheel's
`dashboard` extra (Dash, dash-auth, gunicorn). Served by gunicorn: `--workers` processes of
`--threads` threads, each process with at most `--pool-size` database connections and a
`--cache-seconds` render cache shared by its viewers. When the configured event model
(`ingest.model`) has a dashboard rollup (`dashboard = true`), the page adds a Breakdown card
of its dimensions.

Run: `clickstream-dashboard --env local` (installed), then open http://127.0.0.1:8050/.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence

from clickstream_pipeline.core.cli import config_from_args, job_parser, run_job
from clickstream_pipeline.core.errors import SetupError
from clickstream_pipeline.dashboard.server import SERVERS, Serving


def positive_seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parser() -> argparse.ArgumentParser:
    p = job_parser("clickstream-dashboard", "Serve the live clickstream dashboard.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: local)")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--user", default="clickstream", help="login name (with Dashboard-Password)")
    p.add_argument(
        "--refresh-seconds",
        type=positive_seconds,
        default=10.0,
        help="how often the page reloads its panels (default 10)",
    )
    served = Serving()
    p.add_argument(
        "--server",
        choices=SERVERS,
        default=served.server,
        help=f"the WSGI server (default {served.server}; development: Flask's, for debugging)",
    )
    p.add_argument(
        "--workers",
        type=at_least_one,
        default=served.workers,
        help="gunicorn processes (default 2)",
    )
    p.add_argument(
        "--threads",
        type=at_least_one,
        default=served.threads,
        help="threads per process (default 8)",
    )
    p.add_argument(
        "--pool-size",
        type=at_least_one,
        default=served.pool_size,
        help="database connections per process, at most (default 4)",
    )
    p.add_argument(
        "--cache-seconds",
        type=float,
        default=served.cache_seconds,
        help="reuse a view's panels this long across viewers (default 5; 0: never)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from clickstream_pipeline.core.model import load_model
    from clickstream_pipeline.core.secrets import resolve_secrets
    from clickstream_pipeline.warehouse.database import configured_params

    try:
        from clickstream_pipeline.dashboard.panels import DashboardRollup
        from clickstream_pipeline.dashboard.server import serve
    except ImportError as exc:
        raise SetupError(
            f"the dashboard needs the `dashboard` extra ({exc}): "
            "pip install 'clickstream-pipeline[dashboard]'"
        ) from None
    cfg = config_from_args(args)
    secrets = resolve_secrets(cfg.secrets, ["database"], optional=["dashboard_password"])
    params = configured_params(cfg, secrets)
    password = secrets.get("dashboard_password")
    if password is None and not is_loopback(args.host):
        raise SetupError(
            f"--host {args.host} serves beyond this machine: set the "
            f"{cfg.secrets.name_of('dashboard_password')} secret for a login, or use 127.0.0.1"
        )
    serving = Serving(
        args.host,
        args.port,
        args.server,
        args.workers,
        args.threads,
        args.pool_size,
        args.cache_seconds,
    )
    serve(
        params,
        serving,
        args.refresh_seconds,
        connect_timeout=cfg.database.connect_timeout_s,
        login=(args.user, password) if password is not None else None,
        rollup=DashboardRollup.of(load_model(cfg.ingest.model)),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
