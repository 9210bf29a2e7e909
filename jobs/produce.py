"""Send clickstream events to Kafka: replay lab CSV files or generate synthetic traffic.

Also writes lab-format CSV files from the same generator (`--to-csv DIR`), for
`clickstream-load`. Exit codes: 0 every message acknowledged, 1 some failed or bad input,
2 bad flags, config or secrets. The flags: `clickstream_pipeline.traffic.command`.

Run: `clickstream-produce --env local --count 10000` (installed),
or `spark-submit jobs/produce.py --env local` (no Spark is started).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from clickstream_pipeline.core.cli import EXIT_FAILED, EXIT_OK, config_from_args, run_job
from clickstream_pipeline.traffic import command

log = logging.getLogger(__name__)

OPTIONAL_SECRETS = ("kafka_server", "kafka_connection_string")


def run(args: argparse.Namespace) -> int:
    if args.to_csv:
        print(command.write_csv(args))
        return EXIT_OK

    from clickstream_pipeline.core.secrets import resolve_secrets
    from clickstream_pipeline.ingest.source import producer_config
    from clickstream_pipeline.traffic.producer import ProducerError, send_events

    cfg = config_from_args(args)
    topic = args.topic or cfg.kafka.topics[0]
    options = command.send_options(args, topic, cfg.kafka.security == "eventhubs")
    events, source = command.events(args)
    log.info("sending %s", source)
    if not args.csv and args.count is None and args.duration is None:
        log.info("no --count or --duration: sending until interrupted (Ctrl-C)")
    secrets = resolve_secrets(cfg.secrets, optional=OPTIONAL_SECRETS)
    try:
        stats = send_events(producer_config(cfg.kafka, secrets), events, options)
    except ProducerError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    print(stats.summary(topic))
    return EXIT_OK if stats.ok else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, command.parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
