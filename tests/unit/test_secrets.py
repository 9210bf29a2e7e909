import re
from pathlib import Path

import pytest

from clickstream_pipeline.core.config import SecretsConfig
from clickstream_pipeline.core.errors import SecretError
from clickstream_pipeline.core.secrets import env_fetcher, env_variable_name, resolve_secrets

VALUE = "jdbc:postgresql://h:5432/citus?user=citus&password=s3cr3t-Value"


def secret_file(folder: Path, text: str) -> Path:
    """A secrets file as the stack writes one: mode 600 before anything is in it."""
    path = folder / "secrets.env"
    path.touch(mode=0o600)
    path.write_text(text)
    return path


def test_file_backend_reads_name_value_lines(tmp_path: Path):
    path = secret_file(
        tmp_path, f"# local\nDatabase-Connection-String={VALUE}\n\nKafka-Server=k:9093\n"
    )
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
    path = secret_file(tmp_path, "Kafka-Server=k\n")
    with pytest.raises(SecretError, match=r"'Database-Connection-String'.*secret file"):
        resolve_secrets(SecretsConfig(backend="file", file=str(path)), ["database"])


def test_values_never_show_in_repr_or_str(tmp_path: Path):
    path = secret_file(tmp_path, f"Database-Connection-String={VALUE}\n")
    secrets = resolve_secrets(SecretsConfig(backend="file", file=str(path)), ["database"])
    shown = repr(secrets) + str(secrets["database"]) + repr(secrets["database"])
    assert "s3cr3t" not in shown


def test_malformed_secret_file_line_is_reported_without_its_text(tmp_path: Path):
    path = secret_file(tmp_path, "this-line-has-no-separator-s3cr3t\n")
    with pytest.raises(SecretError, match="line 1") as info:
        resolve_secrets(SecretsConfig(backend="file", file=str(path)), ["database"])
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_a_secret_file_others_can_read_is_refused_naming_the_file_and_the_fix(
    tmp_path: Path, mode: int
):
    path = secret_file(tmp_path, f"Database-Connection-String={VALUE}\n")
    path.chmod(mode)
    with pytest.raises(SecretError, match=rf"{re.escape(str(path))}.*chmod 600") as info:
        resolve_secrets(SecretsConfig(backend="file", file=str(path)), ["database"])
    assert "s3cr3t" not in str(info.value)
    path.chmod(0o600)
    secrets = resolve_secrets(SecretsConfig(backend="file", file=str(path)), ["database"])
    assert secrets["database"].get_secret_value() == VALUE
