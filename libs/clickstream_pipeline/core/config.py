"""Typed configuration: `conf/<env>.toml`, then environment variables, then `--set` overrides.

Precedence (last wins):
1. the environment's file, shipped in the wheel as `clickstream_pipeline/conf/<env>.toml`
   (or `--conf-file PATH`); a file with `extends = "<other env>"` starts from that env's file
   and changes only what it sets;
2. environment variables `CLICKSTREAM__SECTION__KEY=value` (double underscores nest);
3. command-line `--set section.key=value`.

Values given as text are read as TOML values when they parse (`8`, `true`, `["a","b"]`) and as
plain strings otherwise. The result is validated once, at start-up; a bad file or key fails
with a message naming the key. Secrets are never values here: config names them, and
`clickstream_pipeline.core.secrets` resolves them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol, get_origin

import tomllib
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from clickstream_pipeline.core.errors import ConfigError
from clickstream_pipeline.core.fields import EVENTS_SCHEMA, EVENTS_TABLE

ENV_PREFIX = "CLICKSTREAM__"

# Logical secret key -> the lab's Key Vault secret name.
DEFAULT_SECRET_NAMES = {
    "database": "Database-Connection-String",
    "kafka_server": "Kafka-Server",
    "kafka_connection_string": "Kafka-Connection-String",
    "adls_account_name": "ADLS-Gen2-Account-Name",
    "adls_account_key": "ADLS-Gen2-Account-Key",
    "sp_client_id": "WWI-SP-Client-ID",
    "sp_client_key": "WWI-SP-Client-Key",
    "tenant_id": "Azure-Tenant-ID",
    "s3_access_key": "S3-Access-Key",
    "s3_secret_key": "S3-Secret-Key",
    "kafka_truststore_password": "Kafka-Truststore-Password",
    "dashboard_password": "Dashboard-Password",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretsConfig(_Section):
    """Where secrets come from, and the secret name behind each logical key."""

    backend: Literal["env", "file", "keyvault", "databricks"] = "env"
    file: str | None = None
    vault_url: str | None = None
    vault_ca_file: str | None = None  # PEM bundle for a vault with a private CA (local stack)
    # Azure checks that the auth challenge names a *.vault.azure.net resource; a local vault
    # answers for localhost, so the local config turns the check off.
    vault_verify_challenge_resource: bool = True
    scope: str = "key-vault-secrets"
    # Logical key -> secret name; defaults are the lab's Key Vault names. A config that names
    # some keys changes those and keeps the defaults of the rest.
    names: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SECRET_NAMES))

    @field_validator("names", mode="before")
    @classmethod
    def _over_defaults(cls, names: object) -> object:
        if not isinstance(names, dict):
            return names
        unknown = sorted(set(names) - set(DEFAULT_SECRET_NAMES))
        if unknown:
            raise ValueError(
                f"secrets.names has no logical key {', '.join(map(repr, unknown))}; "
                f"the keys are {', '.join(DEFAULT_SECRET_NAMES)}"
            )
        return {**DEFAULT_SECRET_NAMES, **names}

    def name_of(self, key: str) -> str:
        try:
            return self.names[key]
        except KeyError:
            raise ConfigError(f"secrets.names has no entry for {key!r}") from None


class KafkaConfig(_Section):
    """The Kafka source. `security = "eventhubs"` is SASL_SSL/PLAIN with `$ConnectionString`."""

    bootstrap_servers: str | None = None  # None: from the Kafka-Server secret
    topics: list[str] = Field(default_factory=lambda: ["clickstream"])
    topic_pattern: str | None = None
    security: Literal["plaintext", "eventhubs"] = "plaintext"
    ssl_truststore: str | None = None  # PKCS12 for a private CA (local broker); None: JVM's CAs
    ssl_ca_pem: str | None = None  # the same CA as PEM, for librdkafka clients
    # Databricks Runtime shades its Kafka client: there the class is kafkashaded.org.apache...
    sasl_login_module: str = "org.apache.kafka.common.security.plain.PlainLoginModule"
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = Field(default=None, gt=0)
    min_partitions: int | None = Field(default=None, gt=0)
    fail_on_data_loss: bool = True
    group_id_prefix: str | None = None
    request_timeout_ms: int = Field(default=60000, gt=0)
    session_timeout_ms: int = Field(default=60000, gt=0)
    # How long the broker may hold a fetch that finds no new data. Kafka's 500 ms default is
    # paid by every task that reads to the end of its offset range (about 0.8 s per
    # micro-batch measured here); Spark only fetches ranges that exist, so a short wait is free.
    fetch_max_wait_ms: int = Field(default=20, gt=0)
    # Records per consumer poll and bytes per partition fetch. Kafka's defaults (500 records,
    # 1 MiB) halve the Kafka source's speed here (benchmarks/stages.py: 224k rows/s against
    # 496k with these).
    max_poll_records: int = Field(default=20000, gt=0)
    max_partition_fetch_bytes: int = Field(default=8 * 1024 * 1024, gt=0)

    @field_validator("topics")
    @classmethod
    def _topics_not_blank(cls, topics: list[str]) -> list[str]:
        if any(not t.strip() for t in topics):
            raise ValueError("topic names must not be blank")
        return topics


class StorageConfig(_Section):
    """Checkpoints and the lake (dead letters): local paths, s3a:// or abfss://."""

    checkpoint_root: str = ".stack/checkpoints"
    lake_root: str = ".stack/lake"
    s3_endpoint: str | None = None  # e.g. http://127.0.0.1:59000 for a local S3-compatible store
    s3_path_style: bool = True
    s3_ssl: bool = False
    adls_auth: Literal["none", "account_key", "service_principal"] = "none"
    # s3a:// checkpoints written in place by Spark's cloud module (spark-hadoop-cloud jar)
    # instead of written and renamed, which S3 does as a copy: ~150 ms less per micro-batch
    s3a_checkpoint_in_place: bool = False


LATE_C2_COMPILES = " ".join(
    f"-XX:Tier4{name}={27 * default}"
    for name, default in (
        ("InvocationThreshold", 5000),
        ("MinInvocationThreshold", 600),
        ("CompileThreshold", 15000),
        ("BackEdgeThreshold", 40000),
    )
)


class SparkConfig(_Section):
    master: str | None = None  # None: use the cluster's (Databricks, spark-submit --master)
    # a Spark Connect server to be the client of (sc://host:port) instead of starting Spark
    remote: str | None = None
    app_name: str = "clickstream-pipeline"
    jars_dir: str | None = None  # a folder of resolved jars for sessions started here
    # local[...] sessions map their classes from a class-data-sharing archive, trained by the
    # first session (faster session start and first batch; see class_archive.py)
    class_archive: bool = True
    # local[...] sessions' Python workers import pyspark from its installed package and ACK
    # task data at once (core/python_daemon.py: about 70 ms less per task); false: Spark's own
    python_daemon: bool = True
    # local[...] sessions' JVM options: the JIT's C2 compiler waits for 27x its default counts, so
    # on a few cores it compiles the per-row code, not every method a job's start runs through
    java_options: str = LATE_C2_COMPILES
    shuffle_partitions: int = Field(default=4, gt=0)
    ui: bool = False
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("conf", mode="before")
    @classmethod
    def _values_as_spark_reads_them(cls, conf: object) -> object:
        # `64` or `false` from a TOML file, a variable or --set: Spark's "64" and "false"
        if not isinstance(conf, dict):
            return conf
        return {k: _spark_value(v) for k, v in conf.items()}


def _spark_value(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else value


# libpq's (and PostgreSQL JDBC's) sslmode values, weakest first
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class DatabaseConfig(_Section):
    connect_timeout_s: int = Field(default=10, gt=0)
    application_name: str = "clickstream-pipeline"
    # Citus: shards of each table the bootstrap distributes (None: the server's
    # citus.shard_count, 32 unless the cluster sets it); ignored on plain PostgreSQL.
    citus_shard_count: int | None = Field(default=None, gt=0)
    min_sslmode: SslMode = Field(
        default="verify-full",
        description=(
            "The weakest sslmode the connection string may give for a host outside loopback "
            "(no sslmode counts as libpq's default, prefer). verify-full checks the server's "
            "certificate and name; require encrypts without checking who answers, so it is "
            "refused unless this is lowered to it."
        ),
    )
    loopback_min_sslmode: SslMode = Field(
        default="disable",
        description=(
            "The same minimum for a loopback host (127.0.0.0/8, ::1, localhost) or a Unix "
            "socket, where traffic never leaves the machine."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _events_where_the_migrations_create_it(cls, data: object) -> object:
        for key in ("schema_name", "events_table"):
            if isinstance(data, dict) and key in data:
                raise ValueError(
                    f"database.{key} is not a setting: the migrations create the events table "
                    f"as {EVENTS_SCHEMA}.{EVENTS_TABLE}, and the sink, offset ledger, rollups, "
                    "loader and dashboard all use it there; remove the key"
                )
        return data


QUERY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class IngestConfig(_Section):
    """The streaming ingest job: trigger, validation bounds, sink behaviour."""

    query_name: str = "clickstream-ingest"  # also the sink's name in the offset ledger
    trigger: Literal["processing_time", "available_now"] = "processing_time"
    # 1 s measured best here: p95 Kafka -> events 1.6 s at 2,000 msg/s against 6.9 s with 5 s
    trigger_interval: str = "1 second"
    max_text_length: int = Field(default=256, gt=0)
    max_past_s: int = Field(default=2 * 24 * 3600, ge=0)
    max_future_s: int = Field(default=15 * 60, ge=0)
    rollup_after_batch: bool = False
    # the rollups run in a driver thread (one run at a time, requests coalesced), so the next
    # batch does not wait for them; false: inside the batch, before its offsets commit
    rollup_in_background: bool = True
    # At most this many tasks per micro-batch (Kafka partitions are merged, never split; a
    # Python task costs about 0.2 s however small). None: the cores Spark has.
    max_tasks: int | None = Field(default=None, gt=0)
    # freshness per tenant (clickstream_ingest_tenant_freshness, metrics): this many busiest
    # and this many slowest customers of each batch by name, the rest as one "other"; 0: off
    tenant_freshness_top: int = Field(default=10, ge=0)
    # worker: rules run in the Python worker over the raw bytes (msgspec + Arrow), records
    # they do not cover left to Spark's; spark: Spark's rules for every record
    validation: Literal["worker", "spark"] = "worker"
    # binary: streamed binary COPY through ADBC (CSV only for a task it fails on); csv: always
    sink_copy_format: Literal["binary", "csv"] = "binary"
    sink_max_attempts: int = Field(default=8, gt=0)
    sink_backoff_s: float = Field(default=0.25, gt=0)
    max_message_bytes: int = Field(
        default=1 << 20,
        gt=0,
        description=(
            "The largest Kafka message value, in bytes, the ingest validates (1 MiB, as Event "
            "Hubs allows). A larger one is a dead letter with reason too_large, its Kafka "
            "coordinates and its first 64 KiB, never parsed."
        ),
    )
    arrow_batch_bytes: int = Field(
        default=64 << 20,
        ge=0,
        description=(
            "The most bytes of records Spark hands a Python worker in one Arrow batch, besides "
            "its 10,000 rows. Spark then sizes the batch after every row (1.4x the time from "
            "Kafka to a Python worker, within the noise from Kafka to events, in "
            "benchmarks/stages.py); 0: by rows only, for topics of known small messages."
        ),
    )
    task_buffer_bytes: int = Field(
        default=64 << 20,
        gt=0,
        description=(
            "What a sink task holds in memory, in bytes, of the records it hands back whole "
            "(dead letters with their raw bytes, records left to Spark's rules); the rest waits "
            "in a temporary file in Spark's local directories until the task returns it."
        ),
    )
    # the driver's OpenMetrics endpoint, http://127.0.0.1:<port>/metrics (None: not served)
    metrics_port: int | None = Field(default=None, gt=0, lt=65536)
    topic_generation: str = Field(
        default="",
        max_length=64,
        description=(
            "A label for the current incarnation of topics whose broker gives no topic id "
            "(Azure Event Hubs): the offset ledger keys their offsets by it. Set a new label "
            "after deleting and recreating such a topic, so its new messages are written "
            "instead of refused."
        ),
    )
    rollup_drain_timeout_s: float = Field(
        default=120.0,
        ge=0,
        description=(
            "How long the ingest job waits, when its query ends, for the rollup run the last "
            "batches asked for (with rollup_after_batch and rollup_in_background)."
        ),
    )

    @field_validator("query_name")
    @classmethod
    def _name_is_a_folder_name(cls, name: str) -> str:
        # the checkpoint's folder under storage.checkpoint_root: never '..', '/' or blank
        if not QUERY_NAME.fullmatch(name):
            raise ValueError(
                "query_name must be 1-128 letters, digits, '_', '.' or '-', starting with a "
                f"letter or digit (it names the checkpoint's folder), got {name!r}"
            )
        return name


class Config(_Section):
    env: str
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)

    @property
    def checkpoint_location(self) -> str:
        return f"{self.storage.checkpoint_root.rstrip('/')}/{self.ingest.query_name}"

    @property
    def dead_letter_path(self) -> str:
        return f"{self.storage.lake_root.rstrip('/')}/dead_letters"


def load_config(
    env: str = "local",
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    conf_file: str | Path | None = None,
) -> Config:
    """Build the validated config for `env`; raises ConfigError with a readable message."""
    environ = os.environ if environ is None else environ
    data = _read_file(env, conf_file)
    for key, value in sorted(environ.items()):
        if key.startswith(ENV_PREFIX):
            path = _setting_path(key[len(ENV_PREFIX) :].split("__"), "__", lower=True)
            _assign(data, path, _parse_value(value), origin=f"environment variable {key}")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        dotted, value = item.split("=", 1)
        path = _setting_path(dotted.strip().split("."), ".", lower=False)
        _assign(data, path, _parse_value(value), origin=f"--set {dotted}")
    data["env"] = env
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration for env {env!r}: {problems}") from None


ADLS_ACCOUNT_PLACEHOLDER = "{adls_account}"
_ADLS_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")  # Azure storage account naming rule


class SecretLookup(Protocol):
    """What `resolve_storage_paths` needs of resolved secrets (`secrets.Secrets` has it)."""

    def get(self, key: str) -> SecretStr | None: ...


def resolve_storage_paths(cfg: Config, secrets: SecretLookup) -> Config:
    """Fill `{adls_account}` in `storage.checkpoint_root` / `lake_root` from the account secret.

    The account name becomes part of an abfss:// path (as on any Spark UI); keys never do.
    """
    roots = {"checkpoint_root": cfg.storage.checkpoint_root, "lake_root": cfg.storage.lake_root}
    if not any(ADLS_ACCOUNT_PLACEHOLDER in root for root in roots.values()):
        return cfg
    secret = secrets.get("adls_account_name")
    name = cfg.secrets.names.get("adls_account_name", "adls_account_name")
    if secret is None:
        raise ConfigError(
            f"storage paths use {ADLS_ACCOUNT_PLACEHOLDER} but secret {name!r} is not resolved"
        )
    account = secret.get_secret_value().strip()
    if not _ADLS_ACCOUNT_NAME.fullmatch(account):
        raise ConfigError(
            f"secret {name!r} is not a storage account name (3-24 lower-case letters or digits)"
        )
    filled = {k: v.replace(ADLS_ACCOUNT_PLACEHOLDER, account) for k, v in roots.items()}
    return cfg.model_copy(update={"storage": cfg.storage.model_copy(update=filled)})


def available_envs() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml")
        for p in resources.files("clickstream_pipeline.conf").iterdir()
        if p.name.endswith(".toml")
    )


def _read_file(
    env: str, conf_file: str | Path | None, seen: tuple[str, ...] = ()
) -> dict[str, Any]:
    if conf_file is not None:
        path = Path(conf_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        text = path.read_text(encoding="utf-8")
        where = str(path)
    else:
        resource = resources.files("clickstream_pipeline.conf").joinpath(f"{env}.toml")
        if not resource.is_file():
            raise ConfigError(
                f"no config for env {env!r}; known envs: {', '.join(available_envs())}"
            )
        text = resource.read_text(encoding="utf-8")
        where = f"conf/{env}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str) or parent in (*seen, env):
        raise ConfigError(f"{where}: extends must name another env, without a cycle")
    return _merged(_read_file(parent, None, (*seen, env)), data)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _setting_path(parts: list[str], separator: str, lower: bool) -> list[str]:
    """Section and key names (lower-cased from a variable's name); below a dict-valued setting
    (`spark.conf`, `secrets.names`) the rest is one key, its case kept: Spark's keys have dots
    and capitals (`spark.conf.spark.sql.files.maxPartitionBytes`)."""
    path: list[str] = []
    model: type[BaseModel] | None = Config
    for i, part in enumerate(parts):
        name = part.lower() if lower else part
        path.append(name)
        field = model.model_fields.get(name) if model is not None else None
        kind = field.annotation if field is not None else None
        if get_origin(kind) is dict:
            if i + 1 < len(parts):
                path.append(separator.join(parts[i + 1 :]))
            return path
        model = kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None
    return path


def _assign(data: dict[str, Any], path: list[str], value: Any, origin: str) -> None:
    if not path or any(not part for part in path):
        raise ConfigError(f"{origin}: empty key")
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {part!r} is not a section")
        node = child
    node[path[-1]] = value
