"""Kafka / Azure Event Hubs read options for Spark's Kafka source.

Event Hubs' Kafka endpoint is SASL_SSL with mechanism PLAIN, the literal username
`$ConnectionString` and the namespace connection string as password; its port is 9093 when the
`Kafka-Server` secret gives only the namespace host.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection

from pyspark.sql import DataFrame, SparkSession

from clickstream_pipeline.core.config import KafkaConfig
from clickstream_pipeline.core.errors import SourceConfigError
from clickstream_pipeline.core.secrets import Secrets

log = logging.getLogger(__name__)

EVENT_HUBS_PORT = 9093

# librdkafka settings as confluent-kafka takes them
ClientConf = dict[str, str | int | float | bool]


def bootstrap_servers(kafka: KafkaConfig, secrets: Secrets) -> str:
    if kafka.bootstrap_servers:
        return kafka.bootstrap_servers
    server = secrets.get("kafka_server")
    if server is None:
        raise SourceConfigError(
            "kafka.bootstrap_servers is not set and the Kafka-Server secret is missing"
        )
    value = server.get_secret_value().strip()
    if kafka.security == "eventhubs" and ":" not in value:
        value = f"{value}:{EVENT_HUBS_PORT}"
    return value


def jaas_config(connection_string: str, login_module: str) -> str:
    escaped = connection_string.replace("\\", "\\\\").replace('"', '\\"')
    return f'{login_module} required username="$ConnectionString" password="{escaped}";'


def security_options(kafka: KafkaConfig, secrets: Secrets) -> dict[str, str]:
    """Kafka client properties (without the `kafka.` prefix) for the configured security."""
    if kafka.security == "plaintext":
        return {}
    connection = secrets.get("kafka_connection_string")
    if connection is None:
        raise SourceConfigError(
            "kafka.security = eventhubs needs the Kafka-Connection-String secret"
        )
    options = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.jaas.config": jaas_config(connection.get_secret_value(), kafka.sasl_login_module),
        "request.timeout.ms": str(kafka.request_timeout_ms),
        "session.timeout.ms": str(kafka.session_timeout_ms),
    }
    if kafka.ssl_truststore:
        options["ssl.truststore.location"] = kafka.ssl_truststore
        options["ssl.truststore.type"] = "PKCS12"
        password = secrets.get("kafka_truststore_password")
        if password is not None:
            options["ssl.truststore.password"] = password.get_secret_value()
    return options


def kafka_read_options(kafka: KafkaConfig, secrets: Secrets, partitions: int = 0) -> dict[str, str]:
    """Options for `spark.readStream.format("kafka")`.

    Spark splits `maxOffsetsPerTrigger` among the partitions in proportion to their backlog and
    rounds each share down, so a batch takes up to one message a partition less than the limit,
    and a backlog of whole batches leaves a last batch of a few messages that costs a whole
    batch's fixed time. Given the topics' `partitions`, the limit Spark gets is raised by that
    many: a batch then takes at least the configured count and at most `partitions` more.
    """
    options = {
        "kafka.bootstrap.servers": bootstrap_servers(kafka, secrets),
        "startingOffsets": kafka.starting_offsets,
        "failOnDataLoss": str(kafka.fail_on_data_loss).lower(),
        "includeHeaders": "false",
        "kafka.fetch.max.wait.ms": str(kafka.fetch_max_wait_ms),
        "kafka.max.poll.records": str(kafka.max_poll_records),
        "kafka.max.partition.fetch.bytes": str(kafka.max_partition_fetch_bytes),
    }
    if kafka.topic_pattern:
        options["subscribePattern"] = kafka.topic_pattern
    else:
        options["subscribe"] = ",".join(kafka.topics)
    if kafka.max_offsets_per_trigger:
        options["maxOffsetsPerTrigger"] = str(kafka.max_offsets_per_trigger + partitions)
    if kafka.min_partitions:
        options["minPartitions"] = str(kafka.min_partitions)
    if kafka.group_id_prefix:
        options["groupIdPrefix"] = kafka.group_id_prefix
    options.update({f"kafka.{k}": v for k, v in security_options(kafka, secrets).items()})
    return options


def topic_names(kafka: KafkaConfig, listed: Collection[str]) -> list[str]:
    """The topics of those the broker `listed` that the job reads (its list, or its pattern)."""
    if kafka.topic_pattern:
        pattern = re.compile(kafka.topic_pattern)
        return [n for n in listed if pattern.fullmatch(n) and not n.startswith("__")]
    return [n for n in kafka.topics if n in listed]


def read_kafka_stream(
    spark: SparkSession, kafka: KafkaConfig, secrets: Secrets, partitions: int
) -> DataFrame:
    """The Kafka source, given the subscribed topics' `partitions` (`kafka_read_options`)."""
    reader = spark.readStream.format("kafka")
    for key, value in kafka_read_options(kafka, secrets, partitions).items():
        reader = reader.option(key, value)
    return reader.load()


def producer_config(kafka: KafkaConfig, secrets: Secrets) -> ClientConf:
    """librdkafka (confluent-kafka) settings for the same broker and security."""
    conf: ClientConf = {"bootstrap.servers": bootstrap_servers(kafka, secrets)}
    if kafka.security == "eventhubs":
        connection = secrets.get("kafka_connection_string")
        if connection is None:
            raise SourceConfigError(
                "kafka.security = eventhubs needs the Kafka-Connection-String secret"
            )
        conf.update(
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "PLAIN",
                "sasl.username": "$ConnectionString",
                "sasl.password": connection.get_secret_value(),
            }
        )
        if kafka.ssl_ca_pem:
            conf["ssl.ca.location"] = kafka.ssl_ca_pem
    return conf
