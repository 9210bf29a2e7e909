import re
from pathlib import Path

import pytest

from clickstream_pipeline.core.config import available_envs, load_config
from clickstream_pipeline.core.errors import ConfigError


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


def test_local_citus_extends_local_and_changes_only_the_database():
    local = load_config("local", environ={})
    citus = load_config("local-citus", environ={})
    assert citus.secrets.name_of("database") == "Citus-Database-Connection-String"
    assert citus.database.citus_shard_count == 8 and local.database.citus_shard_count is None
    # everything else is local's, secret names included
    assert citus.kafka == local.kafka and citus.storage == local.storage
    assert citus.secrets.name_of("s3_access_key") == local.secrets.name_of("s3_access_key")


def test_a_conf_file_may_extend_an_env_and_cycles_are_refused(tmp_path: Path):
    mine = tmp_path / "mine.toml"
    mine.write_text('extends = "local"\n[kafka]\nstarting_offsets = "latest"\n')
    cfg = load_config("mine", conf_file=mine, environ={})
    assert cfg.kafka.starting_offsets == "latest"
    assert cfg.kafka.bootstrap_servers == "127.0.0.1:59092"  # from local
    loop = tmp_path / "loop.toml"
    loop.write_text('extends = "loop"\n')
    with pytest.raises(ConfigError, match="without a cycle"):
        load_config("loop", conf_file=loop, environ={})


def test_naming_one_secret_keeps_the_other_default_names():
    cfg = load_config("local", ["secrets.names.database=My-DB"], environ={})
    assert cfg.secrets.name_of("database") == "My-DB"
    assert cfg.secrets.name_of("kafka_server") == "Kafka-Server"


@pytest.mark.parametrize(
    "override", ["database.schema_name=analytics", "database.events_table=clicks"]
)
def test_the_events_table_cannot_be_moved_from_where_the_migrations_create_it(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}.*public\.events"):
        load_config("local", [override], environ={})
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config("local", environ={f"CLICKSTREAM__{key.replace('.', '__').upper()}": "x"})


def test_keys_below_spark_conf_keep_their_case_from_the_environment_and_the_command_line():
    environ = {
        "CLICKSTREAM__SPARK__CONF__spark.hadoop.fs.s3a.connection.maximum": "64",
        "CLICKSTREAM__SPARK__CONF__spark.sql.adaptive.coalescePartitions.enabled": "false",
    }
    cfg = load_config("local", ["spark.conf.spark.sql.files.maxPartitionBytes=64m"], environ)
    assert cfg.spark.conf["spark.hadoop.fs.s3a.connection.maximum"] == "64"
    assert cfg.spark.conf["spark.sql.adaptive.coalescePartitions.enabled"] == "false"
    assert cfg.spark.conf["spark.sql.files.maxPartitionBytes"] == "64m"


def test_secret_names_are_set_by_their_logical_key_and_an_unknown_key_is_refused():
    cfg = load_config("local", environ={"CLICKSTREAM__SECRETS__NAMES__database": "Pg-Url"})
    assert cfg.secrets.name_of("database") == "Pg-Url"
    with pytest.raises(ConfigError, match=r"secrets\.names.*'DATABASE'.*database"):
        load_config("local", environ={"CLICKSTREAM__SECRETS__NAMES__DATABASE": "Pg-Url"})


@pytest.mark.parametrize("name", ["..", ".", "../other", "-x", "a b", "a/b", "q" * 129, ""])
def test_query_names_that_are_not_one_plain_folder_name_are_refused(name):
    with pytest.raises(ConfigError, match=r"ingest\.query_name"):
        load_config("local", [f'ingest.query_name="{name}"'], environ={})


def test_ordinary_query_names_are_accepted():
    for name in ("clickstream-ingest", "q-bench-1a2b", "nb_7.v2", "Q" * 128):
        assert load_config("local", [f"ingest.query_name={name}"], environ={}).ingest.query_name
