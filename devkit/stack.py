"""What the local stack offers tests and benchmarks alike: its secrets, a scratch database's,
and topics."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from pydantic import SecretStr

from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.traffic.producer import ClientConf, create_topic, delete_topic
from clickstream_pipeline.warehouse.database import ConnectionParams

# the secrets `make up` writes for the local stack
STACK_SECRETS = (
    "database",
    "kafka_server",
    "kafka_connection_string",
    "s3_access_key",
    "s3_secret_key",
    "kafka_truststore_password",
)


def secrets_for(secrets: Secrets, params: ConnectionParams) -> Secrets:
    """The same secrets with the database URL pointing at `params` (a scratch database)."""
    values = {k: v for k in STACK_SECRETS if (v := secrets.get(k)) is not None}
    values["database"] = SecretStr(params.jdbc_url(with_credentials=True))
    return Secrets(values, secrets.backend)


@contextlib.contextmanager
def fresh_topic(
    conf: ClientConf, prefix: str, partitions: int = 4, config: dict[str, str] | None = None
) -> Iterator[str]:
    """A new topic `<prefix>-<random>` (with topic `config`), deleted afterwards."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    create_topic(conf, topic, partitions, config)
    try:
        yield topic
    finally:
        delete_topic(conf, topic)
