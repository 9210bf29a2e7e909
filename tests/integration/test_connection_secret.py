"""A login whose password holds every character a connection string makes awkward connects
through every client the project uses (psycopg2, ADBC, psql), from the secret written by
hand as the README says: percent-encoded in a JDBC URL, quoted in libpq key=value pairs."""

from __future__ import annotations

import subprocess
import urllib.parse
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from clickstream_pipeline.core.errors import DatabaseConfigError
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.ingest import sink
from clickstream_pipeline.warehouse.database import ConnectionParams, configured_params, connected
from devkit.db import create_login, drop_login
from tests.integration.conftest import Tier

pytestmark = pytest.mark.integration

AWKWARD_PASSWORD = "#+&% '\"\\Zq9"
WHO_OVER_WHAT = "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.fixture
def awkward_login(db: ConnectionParams) -> Iterator[ConnectionParams]:
    login = create_login(db, None, AWKWARD_PASSWORD)
    try:
        yield login
    finally:
        drop_login(db, login)


def quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def written_by_hand(login: ConnectionParams, form: str, password: str) -> str:
    ca = login.options["sslrootcert"]
    if form == "jdbc":
        return (
            f"jdbc:postgresql://{login.host}:{login.port}/{login.dbname}?user={login.user}"
            f"&password={password}&sslmode=verify-full&sslrootcert={urllib.parse.quote(ca)}"
        )
    return (
        f"host={login.host} port={login.port} dbname={login.dbname} user={login.user} "
        f"password={password} sslmode=verify-full sslrootcert={quoted(ca)}"
    )


def secrets_of(secret: str) -> Secrets:
    return Secrets({"database": SecretStr(secret)}, "test")


@pytest.mark.parametrize("form", ["jdbc", "conninfo"])
def test_an_awkward_password_connects_through_every_client(
    tier: Tier, awkward_login: ConnectionParams, form: str
):
    encoded = (
        urllib.parse.quote(AWKWARD_PASSWORD, safe="")
        if form == "jdbc"
        else quoted(AWKWARD_PASSWORD)
    )
    params = configured_params(
        tier.config, secrets_of(written_by_hand(awkward_login, form, encoded))
    )
    assert params.password is not None
    assert params.password.get_secret_value() == AWKWARD_PASSWORD
    expected = (awkward_login.user, True)

    with connected(tier.config, params) as conn, conn.cursor() as cur:
        cur.execute(WHO_OVER_WHAT)
        assert cur.fetchone() == expected

    kwargs = params.psycopg_kwargs("test-connection-secret", 10)
    adbc = sink.adbc_connection(kwargs)
    try:
        with adbc.cursor() as cur:
            cur.execute(WHO_OVER_WHAT)
            assert cur.fetchone() == expected
    finally:
        adbc.close()
        sink._ADBC_ROOTS.pop(sink.conninfo(kwargs)).close()

    psql = subprocess.run(
        ["psql", "-X", "-tA", "-c", WHO_OVER_WHAT],
        env={"PATH": "/usr/bin:/bin", **params.libpq_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert AWKWARD_PASSWORD not in psql.stderr
    assert (psql.returncode, psql.stdout.strip()) == (0, f"{awkward_login.user}|t")


def test_the_password_written_raw_is_refused_before_any_connection(
    tier: Tier, awkward_login: ConnectionParams
):
    secret = written_by_hand(awkward_login, "jdbc", AWKWARD_PASSWORD)
    with pytest.raises(DatabaseConfigError, match="percent-encode") as refused:
        configured_params(tier.config, secrets_of(secret))
    assert "%23" in str(refused.value)
    assert AWKWARD_PASSWORD not in str(refused.value)
    assert "Zq9" not in str(refused.value)
