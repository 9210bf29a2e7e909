from pathlib import Path

import pytest

from clickstream_pipeline.config import available_envs, load_config
from clickstream_pipeline.errors import ConfigError


def test_local_and_databricks_envs_ship_with_the_package():
    assert {"local", "databricks"} <= set(available_envs())
    local = load_config("local", environ={})
    assert local.kafka.bootstrap_servers == "127.0.0.1:59092"
    assert local.storage.checkpoint_root.startswith("s3a://")
    databricks = load_config("databricks", environ={})
    assert databricks.spark.master is None
    assert databricks.secrets.backend == "databricks"
    assert databricks.kafka.security == "eventhubs"
    assert databricks.kafka.sasl_login_module.startswith("kafkashaded.org.apache.kafka.")


def test_environment_then_command_line_override_the_file():
    environ = {
        "CLICKSTREAM__KAFKA__MAX_OFFSETS_PER_TRIGGER": "5000",
        "CLICKSTREAM__SPARK__SHUFFLE_PARTITIONS": "3",
    }
    cfg = load_config("local", ["spark.shuffle_partitions=9", 'kafka.topics=["a","b"]'], environ)
    assert cfg.kafka.max_offsets_per_trigger == 5000
    assert cfg.spark.shuffle_partitions == 9
    assert cfg.kafka.topics == ["a", "b"]


def test_plain_text_values_stay_strings():
    cfg = load_config("local", ["kafka.starting_offsets=latest"], environ={})
    assert cfg.kafka.starting_offsets == "latest"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("spark.shuffle_partitions=0", "spark.shuffle_partitions"),
        ("kafka.security=tls", "kafka.security"),
        ("kafka.no_such_key=1", "kafka.no_such_key"),
        ("kafka.topics=[' ']", "kafka.topics"),
    ],
)
def test_invalid_values_fail_naming_the_key(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config("local", [override], environ={})


def test_unknown_env_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"known envs: .*local"):
        load_config("staging", environ={})


def test_bad_override_syntax_is_explained():
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config("local", ["kafka.topics"], environ={})


def test_conf_file_is_read_and_checked(tmp_path: Path):
    good = tmp_path / "mine.toml"
    good.write_text('[kafka]\nbootstrap_servers = "broker:9092"\n')
    assert load_config("mine", conf_file=good, environ={}).kafka.bootstrap_servers == "broker:9092"
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config("bad", conf_file=bad, environ={})
