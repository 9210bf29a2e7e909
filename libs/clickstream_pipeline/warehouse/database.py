"""PostgreSQL/Citus connections from the lab's connection-string secret.

`Database-Connection-String` is a JDBC URL (as Azure's portal gives it):
`jdbc:postgresql://host:5432/citus?user=citus&password=...&sslmode=verify-full`, or libpq
key=value pairs; `connection_string` reads both (percent-encoding, quoting, refusals) and
refuses an sslmode below `database.min_sslmode`. `ConnectionParams` turns it into psycopg2
keyword arguments, libpq's conninfo and environment (ADBC, psql) and a password-free JDBC URL
plus properties for Spark; its `repr` never shows the password. `configured_params` reads it
from a job's config and secrets. Every module connects through `connect` or `connected` (a
clear error) or `open_connection` (libpq's errors, for `retrying`, which retries the transient
ones with jittered backoff); `kept_connection` keeps one open between a process's uses.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import psycopg2
from pydantic import SecretStr

from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.secrets import Secrets, resolve_secrets
from clickstream_pipeline.warehouse import connection_string

log = logging.getLogger(__name__)

# TLS files libpq and PostgreSQL's JDBC driver both take from the connection string
TLS_FILE_OPTIONS = {k: f"PG{k.upper()}" for k in connection_string.TLS_FILE_KEYS}
# libpq's environment variable for each keyword the connection sets
LIBPQ_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "sslmode": "PGSSLMODE",
    **TLS_FILE_OPTIONS,
}


@dataclass(frozen=True)
class ConnectionParams(connection_string.ConnectionFields):
    """A database to connect to: what its connection string says, and the ways to use it."""

    @classmethod
    def from_connection_string(
        cls,
        text: SecretStr | str,
        min_sslmode: str = connection_string.DEFAULT_MIN_SSLMODE,
        loopback_min_sslmode: str = connection_string.DEFAULT_LOOPBACK_MIN_SSLMODE,
    ) -> ConnectionParams:
        """A JDBC URL or libpq key=value pairs (`connection_string`), refused when its sslmode
        is below the minimum for its host (by default verify-full outside loopback)."""
        plain = text.get_secret_value() if isinstance(text, SecretStr) else text
        found = connection_string.parse_connection_string(plain)
        connection_string.check_sslmode(
            found.host, found.sslmode, found.options, min_sslmode, loopback_min_sslmode
        )
        return cls(**{f.name: getattr(found, f.name) for f in fields(found)})

    @classmethod
    def from_jdbc_url(cls, url: SecretStr | str) -> ConnectionParams:
        """`from_connection_string` with the default minimum sslmode."""
        return cls.from_connection_string(url)

    def libpq_keywords(self) -> dict[str, str | int]:
        """The connection's libpq keywords: host, port, database, and what the string sets of
        user, password, sslmode and TLS files."""
        keywords: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
        }
        optional = {
            "user": self.user,
            "password": self.password.get_secret_value() if self.password else None,
            "sslmode": self.sslmode,
            **self.tls_files(),
        }
        keywords.update({k: v for k, v in optional.items() if v})
        return keywords

    def psycopg_kwargs(self, application_name: str, connect_timeout: int) -> dict[str, Any]:
        return {
            **self.libpq_keywords(),
            "application_name": application_name,
            "connect_timeout": connect_timeout,
        }

    def tls_files(self) -> dict[str, str]:
        """The connection string's TLS files (`sslrootcert`, `sslcert`, `sslkey`)."""
        return {k: v for k, v in self.options.items() if k in TLS_FILE_OPTIONS}

    def libpq_env(self) -> dict[str, str]:
        """The same connection as libpq environment variables (for psql and other tools)."""
        return {LIBPQ_ENV[k]: str(v) for k, v in self.libpq_keywords().items()}

    def conninfo(self) -> str:
        """libpq's `key='value'` form of the connection (with its password)."""
        return connection_string.libpq_conninfo(self.libpq_keywords())

    def jdbc_url(self, with_credentials: bool = False) -> str:
        """The JDBC URL, every value percent-encoded: without credentials (they go in
        `jdbc_properties`), or with them, as the connection-string secret is written."""
        query = {}
        if with_credentials:
            if self.user:
                query["user"] = self.user
            if self.password is not None:
                query["password"] = self.password.get_secret_value()
        query.update(self.options)
        if self.sslmode:
            query["sslmode"] = self.sslmode
        return connection_string.jdbc_url(self.host, self.port, self.dbname, query)

    def jdbc_properties(self) -> dict[str, str]:
        props = {"driver": "org.postgresql.Driver"}
        if self.user:
            props["user"] = self.user
        if self.password is not None:
            props["password"] = self.password.get_secret_value()
        return props

    def describe(self) -> str:
        return f"{self.user or '?'}@{self.host}:{self.port}/{self.dbname}"


def connect(
    params: ConnectionParams,
    application_name: str = "clickstream-pipeline",
    connect_timeout: int = 10,
) -> psycopg2.extensions.connection:
    try:
        return psycopg2.connect(**params.psycopg_kwargs(application_name, connect_timeout))
    except psycopg2.OperationalError as exc:
        # libpq's message names host and reason, never the password.
        raise ConnectionError(f"cannot connect to {params.describe()}: {exc}".strip()) from None


def configured_params(cfg: Config, secrets: Secrets | None = None) -> ConnectionParams:
    """The configured database: its connection string is the secret `database` (resolved here
    unless `secrets` already holds it), refused below `database.min_sslmode` (or
    `database.loopback_min_sslmode` for a loopback host)."""
    secrets = secrets if secrets is not None else resolve_secrets(cfg.secrets, ["database"])
    return ConnectionParams.from_connection_string(
        secrets["database"], cfg.database.min_sslmode, cfg.database.loopback_min_sslmode
    )


@contextmanager
def connected(cfg: Config, params: ConnectionParams) -> Iterator[psycopg2.extensions.connection]:
    """`connect` with the configured application name and timeout; closed on the way out."""
    conn = connect(params, cfg.database.application_name, cfg.database.connect_timeout_s)
    try:
        yield conn
    finally:
        conn.close()


def open_connection(
    connect_kwargs: dict[str, Any], autocommit: bool = False
) -> psycopg2.extensions.connection:
    """A connection from psycopg2 keyword arguments (the picklable form tasks and driver
    threads carry); libpq's errors propagate as they are, for `retrying` to classify."""
    conn = psycopg2.connect(**connect_kwargs)
    conn.autocommit = autocommit
    return conn


Conn = TypeVar("Conn")
_KEPT: dict[tuple[str, str], Any] = {}
_KEPT_LOCK = threading.Lock()


@contextmanager
def kept_connection(
    purpose: str, connect_kwargs: dict[str, Any], open_new: Callable[[], Conn]
) -> Iterator[Conn]:
    """A connection this process keeps for `purpose` between uses (a Python worker's tasks, the
    driver's batches), so a use skips TLS and authentication (about 10 ms each here): the kept
    one when it is free, else `open_new()`. A use that raises closes it instead (a restarted
    server, a broken COPY), so the next one starts afresh; a use must leave it idle."""
    key = (purpose, json.dumps(connect_kwargs, sort_keys=True, default=str))
    with _KEPT_LOCK:
        conn = _KEPT.pop(key, None)
    if conn is None:
        conn = open_new()
    try:
        yield conn
    except BaseException:
        conn.close()
        raise
    with _KEPT_LOCK:
        spare = _KEPT.setdefault(key, conn) is not conn
    if spare:  # another use of the same purpose kept its own first
        conn.close()


# SQLSTATEs worth retrying: connection trouble, server shutting down or starting, serialization
# failure, deadlock, too many connections, and a unique violation (only the ledger has a unique
# key: another attempt committed the same range, and the retry will find it and skip it).
TRANSIENT_SQLSTATES = {
    "08000",
    "08001",
    "08003",
    "08004",
    "08006",
    "57P01",
    "57P02",
    "57P03",
    "40001",
    "40P01",
    "53300",
    "23505",
}


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, psycopg2.InterfaceError):
        return True
    if isinstance(exc, psycopg2.OperationalError) and getattr(exc, "pgcode", None) is None:
        return True  # connection refused, lost or reset: libpq reports no SQLSTATE
    return getattr(exc, "pgcode", None) in TRANSIENT_SQLSTATES


def retrying(
    action: Callable[[], Any],
    max_attempts: int,
    backoff_s: float,
    max_backoff_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Run `action`, retrying transient database errors with jittered exponential backoff."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except psycopg2.Error as exc:
            if not is_transient(exc) or attempt >= max_attempts:
                raise
            delay = min(max_backoff_s, backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            log.warning(
                "transient database error (attempt %d): %s; retrying in %.1fs",
                attempt,
                type(exc).__name__,
                delay,
            )
            sleep(delay)


def fetch(params: ConnectionParams, text: str, args: tuple[Any, ...] = ()) -> list[tuple]:
    """One statement on a connection of its own, committed; its rows ([] when it has none)."""
    conn = connect(params)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(text, args or None)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def server_facts(conn: psycopg2.extensions.connection) -> str:
    """Server version and the pipeline's extensions (installed or merely available)."""
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        (version,) = cur.fetchone()
        cur.execute(
            """SELECT a.name, coalesce(e.extversion, '-')
               FROM pg_available_extensions a LEFT JOIN pg_extension e ON e.extname = a.name
               WHERE a.name IN ('citus', 'topn', 'hll', 'pg_partman', 'pg_cron')
               ORDER BY a.name"""
        )
        extensions = ", ".join(f"{name} {installed}" for name, installed in cur.fetchall())
    conn.rollback()
    return f"PostgreSQL {version}; extensions (installed version or -): {extensions}"


def _has_relation(cur: psycopg2.extensions.cursor, name: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
    row = cur.fetchone()
    return bool(row and row[0])


def scheduled_jobs(conn: psycopg2.extensions.connection) -> list[str]:
    """pg_cron's jobs in this database as `name (schedule)`; empty without pg_cron."""
    with conn.cursor() as cur:
        if not _has_relation(cur, "cron.job"):
            conn.rollback()
            return []
        cur.execute("SELECT jobname || ' (' || schedule || ')' FROM cron.job ORDER BY jobname")
        names = [r[0] for r in cur.fetchall()]
    conn.rollback()
    return names


def citus_layout(conn: psycopg2.extensions.connection) -> list[str]:
    """Where the public tables live on Citus, a line per placement; empty on plain PostgreSQL."""
    with conn.cursor() as cur:
        if not _has_relation(cur, "pg_dist_partition"):
            conn.rollback()
            return []
        cur.execute(
            """SELECT t.citus_table_type, t.distribution_column, t.shard_count,
                      string_agg(t.table_name::text, ', ' ORDER BY t.table_name::text)
               FROM citus_tables t JOIN pg_class c ON c.oid = t.table_name
               WHERE NOT c.relispartition AND c.relnamespace = 'public'::regnamespace
               GROUP BY 1, 2, 3, t.colocation_id ORDER BY 4"""
        )
        lines = [
            f"{kind} by {column} in {shards} colocated shards: {names}"
            if column and column != "<none>"
            else f"{kind}: {names}"
            for kind, column, shards, names in cur.fetchall()
        ]
        cur.execute(
            """SELECT string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_class c
               WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
                 AND NOT c.relispartition
                 AND c.oid NOT IN (SELECT logicalrelid FROM pg_dist_partition)"""
        )
        local = cur.fetchone()
    conn.rollback()
    if local and local[0]:
        lines.append(
            "local on the coordinator (small, written only by the coordinator's own work, so no "
            f"two-phase commit per write): {local[0]}"
        )
    return lines
