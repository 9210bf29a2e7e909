"""Versioned schema migrations shipped in the wheel (`sql/migrations/NNNN_name.sql`).

Each file runs in its own transaction together with its ledger row, so a failing file leaves
nothing behind. The ledger (`clickstream_schema_migrations`: version, name, checksum,
applied_at) makes a second run a no-op, and a file whose text changed after it was applied is
refused. A session-level advisory lock serialises concurrent bootstraps.

The statements of a file are sent one at a time (split by sqlparse, which knows dollar
quotes), as psql sends them: Citus refuses some DDL on distributed partitioned tables inside
a multi-statement query string ("cannot insert multiple commands into a prepared
statement"), and a failure then names its statement and line. On Citus each file runs with
`citus.multi_shard_modify_mode = sequential`, so DDL on distributed tables and function
definitions can share the transaction (Citus's advice for migrations), and with
`citus.shard_count` when one is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources

import psycopg2
import sqlparse
from psycopg2 import sql
from psycopg2.extensions import connection

from clickstream_pipeline.core.errors import DatabaseError, SetupError
from clickstream_pipeline.warehouse.database import citus_layout, scheduled_jobs

log = logging.getLogger(__name__)

SCHEMA = "public"  # the migrations' objects, and the ledger, live here
LEDGER = "clickstream_schema_migrations"
ADVISORY_LOCK_KEY = 0x636C69636B  # "click": one bootstrap at a time per database
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# Earlier texts of a shipped file that did what today's text does where they could be applied,
# so a database that applied one is not refused: version -> {sha256: why it is the same}.
EQUIVALENT_EARLIER_CHECKSUMS: dict[int, dict[str, str]] = {
    3: {
        "c7aec94521b7d5d5c683598b055e4df17fecfbdc3e3adb0886dd44a851072c19": (
            "0003 before Citus sizing: failed on Citus and on pg_partman 5.0/5.1, and made the "
            "same partitions elsewhere (only the table comment differs)"
        ),
    },
}


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

    def accepts(self, checksum: str) -> bool:
        """True when a database that applied a text with `checksum` has what this file makes."""
        return checksum == self.checksum or checksum in EQUIVALENT_EARLIER_CHECKSUMS.get(
            self.version, {}
        )

    def statements(self) -> list[tuple[int, str]]:
        """(line in the file, text) of each statement, in order; comment-only parts dropped."""
        out, pos = [], 0
        for text in sqlparse.split(self.sql, strip_semicolon=False):
            start = self.sql.find(text, pos)
            pos = start + len(text)
            code = _code_lines(text)
            if code:
                out.append((self.sql.count("\n", 0, start) + code[0][0] + 1, text))
        return out


@dataclass
class MigrationReport:
    applied: list[Migration] = field(default_factory=list)
    already_applied: list[Migration] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    local_views: list[str] = field(default_factory=list)  # Citus: views over local tables


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
            ).format(sql.Identifier(SCHEMA, LEDGER))
        )
    conn.commit()


def applied_versions(conn: connection) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of what the database has applied."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{LEDGER}",))
        (exists,) = cur.fetchone()
        if not exists:
            return {}
        cur.execute(
            sql.SQL("SELECT version, name, checksum FROM {} ORDER BY version").format(
                sql.Identifier(SCHEMA, LEDGER)
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
        if not migration.accepts(checksum):
            raise MigrationError(
                f"migration {migration.filename} was applied as {migration.version:04d}_{name}.sql "
                f"with checksum {checksum[:12]}, but the shipped file now has "
                f"{migration.checksum[:12]}: applied migrations must never change; "
                "add a new migration instead"
            )
    return todo


def migrate(
    conn: connection, migrations: list[Migration], citus_shard_count: int | None = None
) -> MigrationReport:
    """Apply every pending migration, each in its own transaction with its ledger row.

    `citus_shard_count`: shards of each table a migration distributes on Citus (None: the
    server's `citus.shard_count`); ignored on plain PostgreSQL.
    """
    report = MigrationReport()
    with bootstrap_lock(conn):
        _ensure_ledger(conn)
        todo = pending(conn, migrations)
        todo_versions = {m.version for m in todo}
        report.already_applied = [m for m in migrations if m.version not in todo_versions]
        for migration in todo:
            _apply(conn, migration, report, citus_shard_count)
    return report


@contextlib.contextmanager
def bootstrap_lock(conn: connection) -> Iterator[None]:
    """The session's advisory lock that lets one bootstrap at a time change the schema; the
    connection is left out of autocommit, and anything uncommitted is rolled back on the way
    out."""
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    conn.commit()
    try:
        yield
    finally:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        conn.commit()


def on_citus(cur: psycopg2.extensions.cursor) -> bool:
    cur.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
    row = cur.fetchone()
    return bool(row and row[0])


def _apply(
    conn: connection, migration: Migration, report: MigrationReport, shard_count: int | None
) -> None:
    del conn.notices[:]
    failed_at: tuple[int, str] | None = None
    try:
        with conn.cursor() as cur:
            # Unqualified names go to public: the default "$user", public would put them in
            # schema citus for the lab's user `citus` on a Citus server (the extension's own).
            cur.execute("SELECT set_config('search_path', %s, true)", (SCHEMA,))
            if on_citus(cur):
                cur.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
                if shard_count is not None:
                    cur.execute(
                        "SELECT set_config('citus.shard_count', %s, true)", (str(shard_count),)
                    )
            for failed_at in migration.statements():
                cur.execute(failed_at[1])
            failed_at = None
            cur.execute(
                sql.SQL("INSERT INTO {} (version, name, checksum) VALUES (%s, %s, %s)").format(
                    sql.Identifier(SCHEMA, LEDGER)
                ),
                (migration.version, migration.name, migration.checksum),
            )
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        detail = (exc.pgerror or str(exc)).strip()
        where = f" at line {failed_at[0]} ({_first_line(failed_at[1])})" if failed_at else ""
        raise MigrationError(
            f"migration {migration.filename} failed{where} and was rolled back: {detail}"
        ) from exc
    for notice in conn.notices:
        text = _notice_text(notice)
        local_view = _LOCAL_VIEW.search(text)
        if local_view:
            report.local_views.append(local_view[1])
            continue
        report.notices.append(f"{migration.filename}: {text}")
        log.info("%s: %s", migration.filename, text)
    report.applied.append(migration)
    log.info("applied %s", migration.filename)


# Citus's warning for a view over tables it does not manage (the view stays on the coordinator).
_LOCAL_VIEW = re.compile(r'"view ([^"]+)" will be created only locally')


def _code_lines(text: str) -> list[tuple[int, str]]:
    """(index, line) of the lines of `text` that are neither blank nor `--` comments."""
    return [
        (i, line.strip())
        for i, line in enumerate(text.splitlines())
        if line.strip() and not line.lstrip().startswith("--")
    ]


def _first_line(statement: str) -> str:
    code = _code_lines(statement)
    first = code[0][1] if code else ""
    return first if len(first) <= 80 else first[:77] + "..."


def _notice_text(notice: str) -> str:
    """A server notice on one line: `NOTICE:`/`WARNING:` and DETAIL/HINT joined."""
    parts = [p.strip() for p in notice.strip().splitlines() if p.strip()]
    return " ".join(parts).removeprefix("NOTICE:").strip()


def report_lines(report: MigrationReport, conn: connection) -> list[str]:
    """What the bootstrap prints: applied files, notices, a summary, where tables live on
    Citus, the pg_cron jobs."""
    lines = [f"applied  {m.filename}" for m in report.applied]
    lines += [f"notice   {n}" for n in report.notices]
    if report.local_views:
        lines.append(
            "notice   views kept on the Citus coordinator only (they read coordinator-local "
            f"tables, as designed): {', '.join(sorted(set(report.local_views)))}"
        )
    lines.append(
        f"bootstrap done: {len(report.applied)} applied, "
        f"{len(report.already_applied)} already applied"
        + (" (nothing changed)" if not report.applied else "")
    )
    lines += [f"citus    {line}" for line in citus_layout(conn)]
    scheduled = scheduled_jobs(conn)
    lines.append(f"scheduled jobs: {', '.join(scheduled) or 'none (pg_cron not installed)'}")
    return lines
