"""Send clickstream events to Kafka: replay lab CSV files or generate synthetic traffic.

Also writes lab-format CSV files from the same generator (`--to-csv DIR`), for
`clickstream-load`. Exit codes: 0 every message acknowledged, 1 some failed or bad input,
2 bad flags, config or secrets.

Run: `clickstream-produce --env local --count 10000` (installed),
or `spark-submit jobs/produce.py --env local` (no Spark is started).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from clickstream_pipeline.core.cli import (
    EXIT_FAILED,
    EXIT_OK,
    config_from_args,
    job_parser,
    run_job,
)
from clickstream_pipeline.core.errors import ConfigError

log = logging.getLogger(__name__)

OPTIONAL_SECRETS = ("kafka_server", "kafka_connection_string")


def parser() -> argparse.ArgumentParser:
    p = job_parser(
        "clickstream-produce",
        "Send clickstream events to Kafka: replay lab CSV files or generate synthetic traffic "
        "(storefront-like, or the lab's uniform draws with --lab-uniform). With --to-csv, "
        "write lab-format CSV files instead.",
    )
    src = p.add_argument_group("source (default: synthetic storefront traffic)")
    src.add_argument(
        "--csv",
        nargs="+",
        metavar="PATH",
        help="replay these lab-format CSV files (a folder: its *.csv), every data row",
    )
    src.add_argument(
        "--lab-uniform", action="store_true", help="the lab's uniform draws instead of storefront"
    )
    src.add_argument("--seed", type=int, help="make synthetic traffic reproducible")
    src.add_argument("--tenants", type=int, default=1000, help="storefront tenants (1000)")
    src.add_argument(
        "--tenant-zipf", type=float, default=1.1, help="tenant skew: share ~ 1/rank^s (1.1)"
    )
    src.add_argument(
        "--session-events", type=float, default=6.0, help="mean events per session (6)"
    )
    src.add_argument("--devices", type=int, default=200_000, help="storefront devices (200000)")

    send = p.add_argument_group("sending")
    send.add_argument("--topic", help="Kafka topic (default: the first of kafka.topics)")
    send.add_argument(
        "--rate", type=float, default=0.0, help="messages/s; 0 = as fast as the broker takes (0)"
    )
    send.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    send.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    send.add_argument(
        "--late-share",
        type=float,
        default=0.0,
        metavar="F",
        help="share of events stamped minutes to hours in the past (late, out of order)",
    )
    send.add_argument(
        "--late-max-minutes", type=float, default=180.0, help="oldest late event, minutes (180)"
    )
    send.add_argument(
        "--lab-fields",
        action="store_true",
        help="send only the lab's six fields (no event_time, event_id), as the lab did",
    )
    send.add_argument(
        "--compression",
        choices=("auto", "none", "gzip", "snappy", "lz4", "zstd"),
        default="auto",
        help="auto: lz4 on Kafka, none on Event Hubs (Standard rejects compressed batches)",
    )
    send.add_argument("--linger-ms", type=int, default=20, help="batching delay, ms (20)")
    send.add_argument("--batch-size", type=int, default=1_000_000, help="max batch bytes (1000000)")
    send.add_argument(
        "--idempotence",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="idempotent producer (default: on for Kafka, off for Event Hubs)",
    )
    send.add_argument(
        "--max-failures",
        type=int,
        default=1000,
        help="stop sending after this many delivery failures; -1 never (1000)",
    )
    send.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on a terminal)",
    )

    out = p.add_argument_group("writing CSV files instead of sending")
    out.add_argument("--to-csv", metavar="DIR", help="write DIR/1.csv .. DIR/<files>.csv")
    out.add_argument("--files", type=int, default=10, help="files to write (10)")
    out.add_argument("--rows", type=int, default=200_000, help="data rows per file (200000)")
    return p


def _events(args: argparse.Namespace) -> Iterator[Any]:
    from clickstream_pipeline.traffic.generator import StorefrontConfig, synthetic_events

    try:
        config = StorefrontConfig(
            tenants=args.tenants,
            tenant_zipf=args.tenant_zipf,
            mean_session_events=args.session_events,
            devices=args.devices,
            hot_devices=min(50, args.devices),
        )
    except ValueError as exc:
        raise ConfigError(f"storefront traffic: {exc}") from None
    return synthetic_events(args.lab_uniform, args.seed, config)


def write_csv(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from clickstream_pipeline.traffic.generator import write_csv_files

    if args.csv:
        raise ConfigError("--to-csv writes synthetic data; it cannot be combined with --csv")
    if args.files < 1 or args.rows < 0:
        raise ConfigError("--files must be >= 1 and --rows >= 0")
    with tqdm(
        total=args.files * args.rows,
        unit="row",
        unit_scale=True,
        file=sys.stderr,
        disable=None if args.progress is None else not args.progress,
        desc="write",
    ) as bar:
        written = write_csv_files(args.to_csv, _events(args), args.files, args.rows, bar.update)
    kind = "lab-uniform" if args.lab_uniform else "storefront"
    print(
        f"wrote {len(written)} files, {sum(n for _, n in written):,} {kind} rows "
        f"({args.rows:,} each) to {args.to_csv}"
    )
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.to_csv:
        return write_csv(args)

    from clickstream_pipeline.core.secrets import resolve_secrets
    from clickstream_pipeline.ingest.source import producer_config
    from clickstream_pipeline.traffic.generator import csv_column_order, csv_paths, read_csv_events
    from clickstream_pipeline.traffic.producer import (
        ProducerError,
        SendOptions,
        send_events,
        target_defaults,
    )

    cfg = config_from_args(args)
    defaults = target_defaults(cfg.kafka.security == "eventhubs")
    topic = args.topic or cfg.kafka.topics[0]
    try:
        options = SendOptions(
            topic=topic,
            rate=args.rate,
            duration_s=args.duration,
            count=args.count,
            late_share=args.late_share,
            late_max_s=max(args.late_max_minutes * 60, 60.0),
            lab_fields_only=args.lab_fields,
            compression=(
                defaults["compression"] if args.compression == "auto" else args.compression
            ),
            linger_ms=args.linger_ms,
            batch_size=args.batch_size,
            idempotence=defaults["idempotence"] if args.idempotence is None else args.idempotence,
            max_failures=None if args.max_failures < 0 else args.max_failures,
            progress=args.progress,
            seed=args.seed,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.csv:
        try:
            paths = csv_paths(args.csv)
            for path in paths:
                csv_column_order(path)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        events = read_csv_events(paths)
        log.info("replaying %d CSV files", len(paths))
    else:
        events = _events(args)
        if args.count is None and args.duration is None:
            log.info("no --count or --duration: sending until interrupted (Ctrl-C)")
    secrets = resolve_secrets(cfg.secrets, optional=OPTIONAL_SECRETS)
    conf = producer_config(cfg.kafka, secrets)
    try:
        stats = send_events(conf, events, options)
    except ProducerError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    print(stats.summary(topic))
    return EXIT_OK if stats.ok else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
