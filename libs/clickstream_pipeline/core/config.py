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
from clickstream_pipeline.core.model import ModelError, load_model

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

    backend: Literal["env", "file", "keyvault", "databricks"] = Field(
        default="env",
        description=(
            "Where secrets come from: env (environment variables, the exact name or its "
            "upper-snake form), file (secrets.file), keyvault (Azure Key Vault through "
            "DefaultAzureCredential), databricks (the secret scope secrets.scope)."
        ),
    )
    file: str | None = Field(
        default=None,
        description="The KEY=value file the file backend reads; it must be mode 600.",
    )
    vault_url: str | None = Field(
        default=None, description="The Key Vault's URL, for the keyvault backend."
    )
    vault_ca_file: str | None = Field(
        default=None,
        description="A PEM bundle for a vault with a private CA (the local stack's).",
    )
    vault_verify_challenge_resource: bool = Field(
        default=True,
        description=(
            "Check that the vault's auth challenge names a *.vault.azure.net resource; a local "
            "vault answers for localhost, so the local config turns the check off."
        ),
    )
    scope: str = Field(
        default="key-vault-secrets",
        description="The Databricks secret scope, for the databricks backend.",
    )
    names: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_SECRET_NAMES),
        description=(
            "Logical key -> secret name; the defaults are the lab's Key Vault names. A config "
            "that names some keys changes those and keeps the defaults of the rest."
        ),
    )

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

    bootstrap_servers: str | None = Field(
        default=None,
        description="host:port of the brokers; unset: from the Kafka-Server secret (port 9093).",
    )
    topics: list[str] = Field(
        default_factory=lambda: ["clickstream"],
        description="The topics the ingest reads; the producer sends to the first.",
    )
    topic_pattern: str | None = Field(
        default=None,
        description="A regular expression of topics to read instead of topics (subscribePattern).",
    )
    security: Literal["plaintext", "eventhubs"] = Field(
        default="plaintext",
        description=(
            "eventhubs: SASL_SSL/PLAIN with the username $ConnectionString and the "
            "Kafka-Connection-String secret as password, as Azure Event Hubs' Kafka endpoint."
        ),
    )
    ssl_truststore: str | None = Field(
        default=None,
        description="A PKCS12 truststore for a broker with a private CA; unset: the JVM's CAs.",
    )
    ssl_ca_pem: str | None = Field(
        default=None, description="The same CA as PEM, for the librdkafka clients."
    )
    sasl_login_module: str = Field(
        default="org.apache.kafka.common.security.plain.PlainLoginModule",
        description=(
            "The PLAIN login module's class; Databricks Runtime shades its Kafka client, so "
            "there it is kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule."
        ),
    )
    starting_offsets: str = Field(
        default="earliest",
        description="Where a new checkpoint starts: earliest, latest or Spark's JSON form.",
    )
    max_offsets_per_trigger: int | None = Field(
        default=None,
        gt=0,
        description=(
            "The least a micro-batch takes from a backlog (the job adds one message a "
            "partition, as Spark rounds each partition's share down); unset: everything."
        ),
    )
    first_batch_max_offsets: int | None = Field(
        default=20_000,
        gt=0,
        description=(
            "At a start, when the topics hold more messages than this and it is less than "
            "`max_offsets_per_trigger`, the first micro-batch takes about this many and the "
            "query then goes on with the full size: a backlog's first rows land after a small "
            "batch. Unset: the first batch is as large as the others."
        ),
    )
    min_partitions: int | None = Field(
        default=None, gt=0, description="Spark's minPartitions for the Kafka source."
    )
    fail_on_data_loss: bool = Field(
        default=True,
        description="Spark's failOnDataLoss: stop when offsets were deleted before being read.",
    )
    group_id_prefix: str | None = Field(
        default=None, description="Spark's groupIdPrefix for the consumers' group ids."
    )
    request_timeout_ms: int = Field(
        default=60000, gt=0, description="The Kafka clients' request.timeout.ms."
    )
    session_timeout_ms: int = Field(
        default=60000, gt=0, description="The Kafka clients' session.timeout.ms."
    )
    fetch_max_wait_ms: int = Field(
        default=20,
        gt=0,
        description=(
            "How long the broker may hold a fetch that finds no new data. Kafka's 500 ms "
            "default is paid by every task that reads to the end of its offset range (about "
            "0.8 s per micro-batch measured here); Spark only fetches ranges that exist, so a "
            "short wait is free."
        ),
    )
    max_poll_records: int = Field(
        default=20000,
        gt=0,
        description=(
            "Records per consumer poll. Kafka's defaults (500 records, 1 MiB a partition "
            "fetch) halve the Kafka source's speed here (benchmarks/stages.py)."
        ),
    )
    max_partition_fetch_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="Bytes per partition fetch."
    )

    @field_validator("topics")
    @classmethod
    def _topics_not_blank(cls, topics: list[str]) -> list[str]:
        if any(not t.strip() for t in topics):
            raise ValueError("topic names must not be blank")
        return topics


class StorageConfig(_Section):
    """Checkpoints and the lake (dead letters): local paths, s3a:// or abfss://."""

    checkpoint_root: str = Field(
        default=".stack/checkpoints",
        description=(
            "Where each query's checkpoint goes (<root>/<query_name>): a local path, s3a:// "
            "or abfss://; {adls_account} is filled from the ADLS-Gen2-Account-Name secret."
        ),
    )
    lake_root: str = Field(
        default=".stack/lake",
        description="Where the Delta dead-letter table goes (<root>/dead_letters).",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="An S3-compatible store's endpoint, e.g. http://127.0.0.1:59000.",
    )
    s3_path_style: bool = Field(default=True, description="Path-style S3 access.")
    s3_ssl: bool = Field(default=False, description="TLS to the S3 endpoint.")
    adls_auth: Literal["none", "account_key", "service_principal"] = Field(
        default="none",
        description=(
            "How abfss:// paths authenticate: with the ADLS account key or a service principal."
        ),
    )
    s3a_checkpoint_in_place: bool = Field(
        default=False,
        description=(
            "s3a:// checkpoints written in place by Spark's cloud module (spark-hadoop-cloud "
            "jar) instead of written and renamed, which S3 does as a copy: about 150 ms less "
            "per micro-batch. Leave it off on ABFS and local paths."
        ),
    )


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
    """The Spark session: a local one, the cluster's, or a Spark Connect client."""

    master: str | None = Field(
        default=None,
        description="e.g. local[2]; unset: the cluster's (Databricks, spark-submit --master).",
    )
    remote: str | None = Field(
        default=None,
        description=(
            "A Spark Connect server to be the client of (sc://host:port) instead of starting Spark."
        ),
    )
    app_name: str = Field(default="clickstream-pipeline", description="Spark's app name.")
    jars_dir: str | None = Field(
        default=None, description="A folder of resolved jars for sessions started here."
    )
    class_archive: bool = Field(
        default=True,
        description=(
            "local[...] sessions map their classes from a class-data-sharing archive, trained "
            "at set-up (faster session start and first batch; see class_archive.py)."
        ),
    )
    python_daemon: bool = Field(
        default=True,
        description=(
            "local[...] sessions' Python workers import pyspark from its installed package and "
            "ACK task data at once (core/python_daemon.py: about 70 ms less per task); false: "
            "Spark's own daemon."
        ),
    )
    java_options: str = Field(
        default=LATE_C2_COMPILES,
        description=(
            "local[...] sessions' JVM options: the JIT's C2 compiler waits for 27x its default "
            "counts, so on a few cores it compiles the per-row code, not every method a job's "
            "start runs through."
        ),
    )
    shuffle_partitions: int = Field(default=4, gt=0, description="spark.sql.shuffle.partitions.")
    ui: bool = Field(default=False, description="Serve Spark's web UI.")
    conf: dict[str, str] = Field(
        default_factory=dict,
        description="More Spark settings, by Spark's name (spark.conf.spark.sql.x = value).",
    )

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
    """The PostgreSQL or Citus database (its connection string is a secret)."""

    connect_timeout_s: int = Field(
        default=10, gt=0, description="Seconds to wait for a connection."
    )
    application_name: str = Field(
        default="clickstream-pipeline",
        description="The application_name the connections show in pg_stat_activity.",
    )
    citus_shard_count: int | None = Field(
        default=None,
        gt=0,
        description=(
            "Citus: shards of each table the bootstrap distributes; unset: the server's "
            "citus.shard_count (32 unless the cluster sets it). Ignored on plain PostgreSQL."
        ),
    )
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
CopyFormat = Literal["binary", "csv"]  # also the type of SinkSettings.copy_format


class IngestConfig(_Section):
    """The streaming ingest job: trigger, event model, sink behaviour."""

    @model_validator(mode="before")
    @classmethod
    def _bounds_moved_to_the_model(cls, data: Any) -> Any:
        moved = {
            "max_text_length": "max_length on each text field",
            "max_past_s": "time.max_past",
            "max_future_s": "time.max_future",
        }
        if isinstance(data, dict) and (found := [k for k in moved if k in data]):
            raise ValueError(
                f"{', '.join(found)} moved to the event model (ingest.model): set "
                + "; ".join(moved[k] for k in found)
                + " in a copy of conf/models/lab.toml"
            )
        return data

    @field_validator("model")
    @classmethod
    def _model_loads(cls, value: str) -> str:
        try:
            load_model(value)
        except ModelError as exc:  # its message names the model's key
            raise ValueError(str(exc)) from None
        return value

    query_name: str = Field(
        default="clickstream-ingest",
        description=(
            "The streaming query's name: its checkpoint folder and the sink's name in the "
            "offset ledger; 1-128 letters, digits, _, . or -."
        ),
    )
    trigger: Literal["processing_time", "available_now"] = Field(
        default="processing_time",
        description=(
            "processing_time: a micro-batch every trigger_interval until stopped; "
            "available_now: read what is there, then stop (also --available-now)."
        ),
    )
    trigger_interval: str = Field(
        default="1 second",
        description=(
            "The processing-time trigger; 1 s measured best here: p95 Kafka -> events 1.6 s at "
            "2,000 msg/s against 6.9 s with 5 s."
        ),
    )
    model: str = Field(
        default="lab",
        description=(
            "The event model: a packaged model's name (lab) or a path to a TOML file: "
            "its fields, their rules and the event time's bounds (docs: how-to/event-model)."
        ),
    )
    rollup_after_batch: bool = Field(
        default=False,
        description="Run the incremental rollups after each committed batch (else pg_cron's).",
    )
    rollup_in_background: bool = Field(
        default=True,
        description=(
            "The rollups run in a driver thread (one run at a time, requests coalesced), so the "
            "next batch does not wait for them; false: inside the batch, before its offsets "
            "commit."
        ),
    )
    max_tasks: int | None = Field(
        default=None,
        gt=0,
        description=(
            "At most this many tasks per micro-batch (Kafka partitions are merged, never split; "
            "a Python task costs about 0.2 s however small); unset: the cores Spark has."
        ),
    )
    tenant_freshness_top: int = Field(
        default=10,
        ge=0,
        description=(
            "Freshness per tenant (clickstream_ingest_tenant_freshness, metrics): this many "
            "busiest and this many slowest customers of each batch by name, the rest as one "
            "other; 0: off."
        ),
    )
    validation: Literal["worker", "spark"] = Field(
        default="worker",
        description=(
            "worker: the rules run in the Python worker over the raw bytes (msgspec + Arrow), "
            "records they do not cover left to Spark's; spark: Spark's rules for every record."
        ),
    )
    sink_copy_format: CopyFormat = Field(
        default="binary",
        description=(
            "binary: streamed binary COPY through ADBC (CSV only for a task it fails on); "
            "csv: always the CSV path."
        ),
    )
    sink_max_attempts: int = Field(
        default=8,
        gt=0,
        description=(
            "Attempts at a write on transient database errors (connection lost, deadlock, ...)."
        ),
    )
    sink_backoff_s: float = Field(
        default=0.25,
        gt=0,
        description="The first retry's backoff in seconds, doubled each attempt, with jitter.",
    )
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
    metrics_port: int | None = Field(
        default=None,
        gt=0,
        lt=65536,
        description=(
            "The driver's OpenMetrics endpoint, http://127.0.0.1:<port>/metrics; unset: off."
        ),
    )
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


# Every [ingest] setting at its default: the runtime settings (SinkSettings, Rules) take
# their own defaults from here, so each default is written once, above.
INGEST_DEFAULTS = IngestConfig()


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
