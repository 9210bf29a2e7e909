"""`clickstream-produce`'s flags and what they become: the events to send (lab CSV files,
synthetic traffic, or an event model's generated events), the producer's `SendOptions`, and
lab-format CSV files written instead."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from clickstream_pipeline.core.cli import (
    add_metrics_port_flag,
    add_progress_flag,
    job_parser,
    progress_bar,
)
from clickstream_pipeline.core.errors import ConfigError
from clickstream_pipeline.core.model import load_model
from clickstream_pipeline.traffic.generator import (
    StorefrontConfig,
    csv_column_order,
    csv_paths,
    model_events,
    read_csv_events,
    synthetic_events,
    write_csv_files,
)
from clickstream_pipeline.traffic.producer import COMPRESSIONS, SendOptions, target_defaults


def parser() -> argparse.ArgumentParser:
    p = job_parser(
        "clickstream-produce",
        "Send clickstream events to Kafka: replay lab CSV files or generate synthetic traffic "
        "(storefront-like, the lab's uniform draws with --lab-uniform, or an event model's "
        "fields with --model). With --to-csv, write lab-format CSV files instead.",
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
    src.add_argument(
        "--model",
        metavar="NAME|PATH",
        help="generate events of this event model (web_analytics, lab, or a .toml file), drawn "
        "by its fields' rules and its [generate] table; the storefront flags do not apply",
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
        help="send only the lab's six fields (no event_time, event_id), as the lab did; "
        "with --model, its fields without the time and id",
    )
    send.add_argument(
        "--compression",
        choices=("auto", *COMPRESSIONS),
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
    add_progress_flag(send)
    add_metrics_port_flag(send)

    out = p.add_argument_group("writing CSV files instead of sending")
    out.add_argument("--to-csv", metavar="DIR", help="write DIR/1.csv .. DIR/<files>.csv")
    out.add_argument("--files", type=int, default=10, help="files to write (10)")
    out.add_argument("--rows", type=int, default=200_000, help="data rows per file (200000)")
    return p


def synthetic(args: argparse.Namespace) -> Iterator[Any]:
    """The synthetic traffic the flags ask for (storefront, or the lab's uniform draws)."""
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


def events(args: argparse.Namespace) -> tuple[Iterator[Any], str]:
    """The events to send and what they are: every row of the CSV files, or synthetic."""
    if args.model:
        if args.csv or args.lab_uniform:
            raise ConfigError("--model cannot be combined with --csv or --lab-uniform")
        model = load_model(args.model)
        return model_events(model, args.seed), f"synthetic events of model {model.name!r}"
    if not args.csv:
        return synthetic(args), "lab-uniform" if args.lab_uniform else "storefront"
    try:
        paths = csv_paths(args.csv)
        for path in paths:
            csv_column_order(path)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    return read_csv_events(paths), f"{len(paths)} CSV files"


def send_options(args: argparse.Namespace, topic: str, eventhubs: bool) -> SendOptions:
    defaults = target_defaults(eventhubs)
    try:
        return SendOptions(
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
            metrics_port=args.metrics_port,
            model=load_model(args.model) if args.model else None,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def write_csv(args: argparse.Namespace) -> str:
    """Write the synthetic traffic as lab-format CSV files; returns what was written."""
    if args.csv:
        raise ConfigError("--to-csv writes synthetic data; it cannot be combined with --csv")
    if args.model:
        raise ConfigError("--to-csv writes the lab's CSV files; it cannot be combined with --model")
    if args.files < 1 or args.rows < 0:
        raise ConfigError("--files must be >= 1 and --rows >= 0")
    with progress_bar(args.files * args.rows, "row", "write", args.progress) as bar:
        written = write_csv_files(args.to_csv, synthetic(args), args.files, args.rows, bar.update)
    kind = "lab-uniform" if args.lab_uniform else "storefront"
    return (
        f"wrote {len(written)} files, {sum(n for _, n in written):,} {kind} rows "
        f"({args.rows:,} each) to {args.to_csv}"
    )
