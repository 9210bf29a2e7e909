"""Every connection to the stack's PostgreSQL servers is TLS, verified against the stack's CA."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import psycopg2
import pytest

from clickstream_pipeline.ingest.sink import adbc_connection
from clickstream_pipeline.warehouse.database import ConnectionParams, connect
from tests.integration.conftest import Tier

pytestmark = pytest.mark.integration

SSL_OF_THIS_SESSION = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def password_of(db: ConnectionParams) -> str:
    assert db.password is not None
    return db.password.get_secret_value()


def test_the_stack_secret_verifies_the_server_against_the_stacks_ca(db: ConnectionParams):
    assert db.sslmode == "verify-full"
    assert Path(db.options["sslrootcert"]).name == "ca.crt"


def test_psycopg2_adbc_and_psql_connect_over_tls(db: ConnectionParams):
    conn = connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(SSL_OF_THIS_SESSION)
            ssl, version = cur.fetchone()
    finally:
        conn.close()
    assert ssl is True and version.startswith("TLSv1.")
    adbc = adbc_connection(db.psycopg_kwargs("test-tls", 10))
    try:
        with adbc.cursor() as cur:
            cur.execute(SSL_OF_THIS_SESSION)
            assert cur.fetchone()[0] is True
    finally:
        adbc.close()
    psql = subprocess.run(
        ["psql", "-X", "-tA", "-c", SSL_OF_THIS_SESSION],
        env={"PATH": "/usr/bin:/bin", **db.libpq_env()},
        capture_output=True,
        text=True,
        check=True,
    )
    assert psql.stdout.startswith("t|TLSv1.")


def test_spark_jdbc_connects_over_tls(spark, db: ConnectionParams):
    rows = (
        spark.read.format("jdbc")
        .option("url", db.jdbc_url())
        .option("query", SSL_OF_THIS_SESSION)
        .options(**db.jdbc_properties())
        .load()
        .collect()
    )
    assert rows[0]["ssl"] is True


def test_a_login_without_tls_is_refused(db: ConnectionParams):
    plain = dataclasses.replace(db, sslmode="disable")
    with pytest.raises(ConnectionError, match="no encryption") as refused:
        connect(plain)
    assert password_of(db) not in str(refused.value)


def test_a_server_signed_by_another_ca_is_refused_without_the_secret(db, tmp_path: Path):
    other_ca = tmp_path / "other-ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=another CA", "-keyout", str(tmp_path / "k"), "-out", str(other_ca)],
        check=True, capture_output=True,
    )  # fmt: skip
    wrong = dataclasses.replace(db, options={**db.options, "sslrootcert": str(other_ca)})
    with pytest.raises(ConnectionError, match="certificate verify failed") as refused:
        connect(wrong)
    assert password_of(db) not in str(refused.value)


def test_a_host_name_the_certificate_does_not_name_is_refused(db: ConnectionParams):
    kwargs = {**db.psycopg_kwargs("test-tls", 10), "host": "db.invalid", "hostaddr": db.host}
    with pytest.raises(psycopg2.OperationalError, match="does not match host name") as refused:
        psycopg2.connect(**kwargs)
    assert password_of(db) not in str(refused.value)


def test_citus_nodes_reach_each_other_over_tls(tier: Tier, db: ConnectionParams):
    if not tier.citus:
        pytest.skip("a Citus cluster only: plain PostgreSQL has no other nodes")
    conn = connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW citus.node_conninfo")
            assert "sslmode=verify-full" in cur.fetchone()[0]
            cur.execute(
                "SELECT nodeport, success, result FROM run_command_on_workers("
                "$$SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()$$)"
            )
            results = cur.fetchall()
    finally:
        conn.close()
    assert len(results) == 2
    assert all(success and result == "t" for _, success, result in results), results
