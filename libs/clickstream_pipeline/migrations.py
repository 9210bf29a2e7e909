"""Versioned schema migrations shipped in the wheel (`sql/migrations/NNNN_name.sql`).

Each file runs in its own transaction together with its ledger row, so a failing file leaves
nothing behind. The ledger (`clickstream_schema_migrations`: version, name, checksum,
applied_at) makes a second run a no-op, and a file whose text changed after it was applied is
refused. A session-level advisory lock serialises concurrent bootstraps.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection

from clickstream_pipeline.errors import DatabaseError, SetupError

log = logging.getLogger(__name__)

LEDGER = "clickstream_schema_migrations"
ADVISORY_LOCK_KEY = 0x636C69636B  # "click": one bootstrap at a time per database
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(DatabaseError):
    """A migration could not be applied, or the database's history disagrees with the files."""


class MigrationFilesError(SetupError):
    """The shipped migration files themselves are inconsistent."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str = field(repr=False)

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass
class MigrationReport:
    applied: list[Migration] = field(default_factory=list)
    already_applied: list[Migration] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def load_migrations(package: str = "clickstream_pipeline.sql.migrations") -> list[Migration]:
    migrations = []
    for entry in resources.files(package).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if not match:
            raise MigrationFilesError(f"migration file {entry.name} is not named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationFilesError(f"two migration files share a version: {versions}")
    return migrations


def _ensure_ledger(conn: connection) -> None:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS {} (
                       version int PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            ).format(sql.Identifier(LEDGER))
        )
    conn.commit()


def applied_versions(conn: connection) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of what the database has applied."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (LEDGER,))
        (exists,) = cur.fetchone()
        if not exists:
            return {}
        cur.execute(
            sql.SQL("SELECT version, name, checksum FROM {} ORDER BY version").format(
                sql.Identifier(LEDGER)
            )
        )
        return {version: (name, checksum) for version, name, checksum in cur.fetchall()}


def pending(conn: connection, migrations: Iterable[Migration]) -> list[Migration]:
    """The migrations still to apply; raises if an applied one changed since."""
    done = applied_versions(conn)
    todo = []
    for migration in migrations:
        if migration.version not in done:
            todo.append(migration)
            continue
        name, checksum = done[migration.version]
        if checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.filename} was applied as {migration.version:04d}_{name}.sql "
                f"with checksum {checksum[:12]}, but the shipped file now has "
                f"{migration.checksum[:12]}: applied migrations must never change; "
                "add a new migration instead"
            )
    return todo


def migrate(conn: connection, migrations: list[Migration]) -> MigrationReport:
    """Apply every pending migration, each in its own transaction with its ledger row."""
    report = MigrationReport()
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    conn.commit()
    try:
        _ensure_ledger(conn)
        todo = pending(conn, migrations)
        todo_versions = {m.version for m in todo}
        report.already_applied = [m for m in migrations if m.version not in todo_versions]
        for migration in todo:
            _apply(conn, migration, report)
    finally:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        conn.commit()
    return report


def _apply(conn: connection, migration: Migration, report: MigrationReport) -> None:
    del conn.notices[:]
    try:
        with conn.cursor() as cur:
            cur.execute(migration.sql)
            cur.execute(
                sql.SQL("INSERT INTO {} (version, name, checksum) VALUES (%s, %s, %s)").format(
                    sql.Identifier(LEDGER)
                ),
                (migration.version, migration.name, migration.checksum),
            )
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        detail = (exc.pgerror or str(exc)).strip()
        raise MigrationError(
            f"migration {migration.filename} failed and was rolled back: {detail}"
        ) from exc
    for notice in conn.notices:
        text = notice.strip().removeprefix("NOTICE:").strip()
        report.notices.append(f"{migration.filename}: {text}")
        log.info("%s: %s", migration.filename, text)
    report.applied.append(migration)
    log.info("applied %s", migration.filename)


def report_lines(report: MigrationReport, scheduled: list[str]) -> list[str]:
    """What the bootstrap prints: applied files, notices, a summary, the pg_cron jobs."""
    lines = [f"applied  {m.filename}" for m in report.applied]
    lines += [f"notice   {n}" for n in report.notices]
    lines.append(
        f"bootstrap done: {len(report.applied)} applied, "
        f"{len(report.already_applied)} already applied"
        + (" (nothing changed)" if not report.applied else "")
    )
    lines.append(f"scheduled jobs: {', '.join(scheduled) or 'none (pg_cron not installed)'}")
    return lines
