"""What every job's entry point shares: the common flags, logging, and exit codes."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

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


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)


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
