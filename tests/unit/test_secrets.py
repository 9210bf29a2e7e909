from pathlib import Path

import pytest

from clickstream_pipeline.core.config import SecretsConfig
from clickstream_pipeline.core.errors import SecretError
from clickstream_pipeline.core.secrets import env_fetcher, env_variable_name, resolve_secrets

VALUE = "jdbc:postgresql://h:5432/citus?user=citus&password=s3cr3t-Value"


def test_file_backend_reads_name_value_lines(tmp_path: Path):
    path = tmp_path / "secrets.env"
    path.write_text(f"# local\nDatabase-Connection-String={VALUE}\n\nKafka-Server=k:9093\n")
    secrets = resolve_secrets(
        SecretsConfig(backend="file", file=str(path)), ["database"], ["kafka_server", "tenant_id"]
    )
    assert secrets["database"].get_secret_value() == VALUE
    assert secrets["kafka_server"].get_secret_value() == "k:9093"
    assert "tenant_id" not in secrets


def test_env_backend_accepts_exact_and_upper_snake_names():
    assert env_variable_name("Database-Connection-String") == "DATABASE_CONNECTION_STRING"
    fetch = env_fetcher({"DATABASE_CONNECTION_STRING": VALUE, "Kafka-Server": "k"})
    assert fetch("Database-Connection-String") == VALUE
    assert fetch("Kafka-Server") == "k"


def test_secret_names_can_be_remapped():
    cfg = SecretsConfig(backend="env", names={"database": "Pg-Url"})
    secrets = resolve_secrets(cfg, ["database"], fetch=env_fetcher({"PG_URL": VALUE}))
    assert secrets["database"].get_secret_value() == VALUE


def test_missing_secret_names_secret_and_backend(tmp_path: Path):
    path = tmp_path / "secrets.env"
    path.write_text("Kafka-Server=k\n")
    with pytest.raises(SecretError, match=r"'Database-Connection-String'.*secret file"):
        resolve_secrets(SecretsConfig(backend="file", file=str(path)), ["database"])


def test_values_never_show_in_repr_or_str(tmp_path: Path):
    path = tmp_path / "secrets.env"
    path.write_text(f"Database-Connection-String={VALUE}\n")
    secrets = resolve_secrets(SecretsConfig(backend="file", file=str(path)), ["database"])
    shown = repr(secrets) + str(secrets["database"]) + repr(secrets["database"])
    assert "s3cr3t" not in shown


def test_malformed_secret_file_line_is_reported_without_its_text(tmp_path: Path):
    path = tmp_path / "secrets.env"
    path.write_text("this-line-has-no-separator-s3cr3t\n")
    with pytest.raises(SecretError, match="line 1") as info:
        resolve_secrets(SecretsConfig(backend="file", file=str(path)), ["database"])
    assert "s3cr3t" not in str(info.value)
