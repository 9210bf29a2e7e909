import pytest
from pydantic import SecretStr

from clickstream_pipeline.core.config import KafkaConfig
from clickstream_pipeline.core.errors import SourceConfigError
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.ingest.source import kafka_read_options, producer_config

CONN = 'Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=k="1'


def secrets(**values: str) -> Secrets:
    return Secrets({k: SecretStr(v) for k, v in values.items()}, "test")


def test_plaintext_options_from_config():
    kafka = KafkaConfig(
        bootstrap_servers="b:9092",
        topics=["a", "b"],
        max_offsets_per_trigger=100,
        min_partitions=8,
        fail_on_data_loss=False,
        starting_offsets="latest",
        fetch_max_wait_ms=30,
        max_poll_records=700,
        max_partition_fetch_bytes=4096,
    )
    assert kafka_read_options(kafka, secrets()) == {
        "kafka.bootstrap.servers": "b:9092",
        "subscribe": "a,b",
        "startingOffsets": "latest",
        "failOnDataLoss": "false",
        "includeHeaders": "false",
        "kafka.fetch.max.wait.ms": "30",
        "kafka.max.poll.records": "700",
        "kafka.max.partition.fetch.bytes": "4096",
        "maxOffsetsPerTrigger": "100",
        "minPartitions": "8",
    }


def test_the_batch_limit_spark_gets_allows_one_message_a_partition_for_its_rounding():
    kafka = KafkaConfig(bootstrap_servers="b:9092", max_offsets_per_trigger=500_000)
    assert kafka_read_options(kafka, secrets(), partitions=4)["maxOffsetsPerTrigger"] == "500004"
    assert kafka_read_options(kafka, secrets())["maxOffsetsPerTrigger"] == "500000"
    unlimited = KafkaConfig(bootstrap_servers="b:9092")
    assert "maxOffsetsPerTrigger" not in kafka_read_options(unlimited, secrets(), partitions=4)


def test_topic_pattern_replaces_the_topic_list():
    options = kafka_read_options(
        KafkaConfig(bootstrap_servers="b", topic_pattern="click.*"), secrets()
    )
    assert options["subscribePattern"] == "click.*"
    assert "subscribe" not in options


def test_event_hubs_form_takes_server_and_password_from_secrets():
    kafka = KafkaConfig(security="eventhubs", group_id_prefix="cp")
    options = kafka_read_options(
        kafka, secrets(kafka_server="ns.servicebus.windows.net", kafka_connection_string=CONN)
    )
    assert options["kafka.bootstrap.servers"] == "ns.servicebus.windows.net:9093"
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.sasl.mechanism"] == "PLAIN"
    assert options["groupIdPrefix"] == "cp"
    jaas = options["kafka.sasl.jaas.config"]
    assert jaas.startswith("org.apache.kafka.common.security.plain.PlainLoginModule required ")
    assert 'username="$ConnectionString"' in jaas
    assert 'SharedAccessKey=k=\\"1";' in jaas  # the quote inside the password is escaped


def test_event_hubs_without_connection_string_fails_clearly():
    with pytest.raises(SourceConfigError, match="Kafka-Connection-String"):
        kafka_read_options(KafkaConfig(security="eventhubs", bootstrap_servers="b:9093"), secrets())


def test_producer_uses_librdkafka_names_for_event_hubs():
    conf = producer_config(
        KafkaConfig(security="eventhubs", ssl_ca_pem="/ca.pem"),
        secrets(kafka_server="localhost:59093", kafka_connection_string=CONN),
    )
    assert conf == {
        "bootstrap.servers": "localhost:59093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "$ConnectionString",
        "sasl.password": CONN,
        "ssl.ca.location": "/ca.pem",
    }
