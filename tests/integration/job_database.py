"""A scratch database the jobs can be pointed at: its own secrets file, and the bootstrap job
run against it as a user runs it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clickstream_pipeline.core.secrets import read_secret_file
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.db import bootstrapped_database
from tests.conftest import PROJECT_DIR


@dataclass(frozen=True)
class JobDatabase:
    """A scratch database (bootstrapped with the lab model) and a secrets file that points the
    jobs at it."""

    params: ConnectionParams
    secrets: Path


@contextlib.contextmanager
def job_database(server: ConnectionParams, folder: Path, prefix: str) -> Iterator[JobDatabase]:
    with bootstrapped_database(server, prefix, models=("lab",)) as db:
        values = read_secret_file(PROJECT_DIR / ".stack" / "secrets.env")
        for name in ("Database-Connection-String", "Citus-Database-Connection-String"):
            values[name] = db.jdbc_url(with_credentials=True)
        path = folder / "secrets.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
        path.chmod(0o600)
        yield JobDatabase(db, path)


def run_bootstrap(
    env: str, database: JobDatabase, model: str, *extra: str
) -> subprocess.CompletedProcess:
    """`clickstream-bootstrap --env <env>` against `database` with `ingest.model=<model>`."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "clickstream_pipeline.jobs.bootstrap",
            "--env",
            env,
            "--set",
            f"secrets.file={database.secrets}",
            "--set",
            f"ingest.model={model}",
            *extra,
        ],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
