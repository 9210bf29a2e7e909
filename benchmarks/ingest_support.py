"""peer_connect's topics, until it takes them from devkit.stack (then this file goes)."""

from __future__ import annotations

from contextlib import AbstractContextManager

from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.ingest.source import producer_config
from devkit import stack


def fresh_topic(
    cfg: Config, secrets: Secrets, prefix: str, partitions: int = 4
) -> AbstractContextManager[str]:
    return stack.fresh_topic(producer_config(cfg.kafka, secrets), prefix, partitions)
