"""What every job's entry point shares: the common flags, logging, and exit codes."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from clickstream_pipeline.core.config import Config, load_config
from clickstream_pipeline.core.errors import DatabaseError, SetupError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2  # bad flags, config, secrets or connection string
EXIT_DATABASE = 3  # the database refused or could not be reached

log = logging.getLogger("clickstream_pipeline")


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--env", default="local", help="config environment: conf/<env>.toml")
    parser.add_argument("--conf-file", help="read this TOML file instead of conf/<env>.toml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. --set kafka.topics='[\"a\"]'",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    return parser


def add_progress_flag(parser: argparse.ArgumentParser | Any) -> None:
    """`--progress/--no-progress` on a parser or argument group (default: on a terminal)."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on a terminal)",
    )


def add_metrics_port_flag(parser: argparse.ArgumentParser | Any) -> None:
    """`--metrics-port N`: OpenMetrics of the running job on http://127.0.0.1:N/metrics."""
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve the job's counts for Prometheus on http://127.0.0.1:PORT/metrics",
    )


def progress_bar(total: float | None, unit: str, desc: str, enabled: bool | None) -> Any:
    """A tqdm bar on stderr; `enabled` None means on a terminal only."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit=unit,
        unit_scale=True,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=None if enabled is None else not enabled,
        mininterval=0.5,
        desc=desc,
    )


def notebook_setting(
    dbutils: Any, name: str, on_databricks: str, elsewhere: str, choices: Sequence[str] = ()
) -> str:
    """A notebook's setting: its widget on Databricks (created with `on_databricks` as the
    default, a dropdown when there are `choices`), `elsewhere` when run as plain Python."""
    if dbutils is None:
        return elsewhere
    if choices:
        dbutils.widgets.dropdown(name, on_databricks, list(choices))
    else:
        dbutils.widgets.text(name, on_databricks)
    return str(dbutils.widgets.get(name))


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)


@contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """While inside, Ctrl-C and SIGTERM (a scheduler's or a supervisor's stop) set an event.

    The handlers only set it: an exception raised inside a py4j call would leave that call's
    connection half-read, and the query might then no longer be stopped.
    """
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.env, args.overrides, conf_file=args.conf_file)


def run_job(
    body: Callable[[argparse.Namespace], int | None],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
) -> int:
    """Parse flags, run `body`, and map failures to exit codes with one clear line each."""
    from psycopg2 import Error as PsycopgError

    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        return body(args) or EXIT_OK
    except SetupError as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        return EXIT_CONFIG
    except (DatabaseError, PsycopgError, ConnectionError) as exc:
        log.error("database error: %s: %s", type(exc).__name__, str(exc).strip())
        return EXIT_DATABASE
    except Exception:
        log.exception("%s failed", parser.prog)
        return EXIT_FAILED
