import pytest

from clickstream_pipeline.core.errors import DatabaseConfigError
from clickstream_pipeline.warehouse.database import ConnectionParams

AZURE = (
    "jdbc:postgresql://lab-c.postgres.database.azure.com:5432/citus"
    "?user=citus&password=Abc!12%26x&sslmode=require"
)


def portal_params() -> ConnectionParams:
    """The portal's URL, with `require` allowed as `database.min_sslmode = "require"` does."""
    return ConnectionParams.from_connection_string(AZURE, min_sslmode="require")


def test_azure_portal_jdbc_url_becomes_psycopg_arguments():
    params = portal_params()
    kwargs = params.psycopg_kwargs("app", 5)
    assert kwargs == {
        "host": "lab-c.postgres.database.azure.com",
        "port": 5432,
        "dbname": "citus",
        "user": "citus",
        "password": "Abc!12&x",
        "sslmode": "require",
        "application_name": "app",
        "connect_timeout": 5,
    }


def test_password_stays_out_of_repr_and_jdbc_url():
    params = portal_params()
    assert "Abc!12" not in repr(params)
    assert "Abc!12" not in params.jdbc_url()
    assert params.jdbc_url().endswith("/citus?sslmode=require")
    assert params.jdbc_properties()["password"] == "Abc!12&x"


def test_default_port_and_extra_options_are_kept():
    params = ConnectionParams.from_jdbc_url("jdbc:postgresql://localhost/x?user=u&ssl=true")
    assert (params.port, params.options) == (5432, {"ssl": "true"})


@pytest.mark.parametrize(
    "bad", ["postgresql://h/db", "jdbc:postgresql:///db", "jdbc:postgresql://h:x/db"]
)
def test_unusable_urls_are_rejected_without_echoing_them(bad):
    with pytest.raises(DatabaseConfigError) as info:
        ConnectionParams.from_jdbc_url(bad + "?password=s3cr3t")
    assert "s3cr3t" not in str(info.value)


def test_libpq_environment_for_psql():
    env = portal_params().libpq_env()
    assert env == {
        "PGHOST": "lab-c.postgres.database.azure.com",
        "PGPORT": "5432",
        "PGDATABASE": "citus",
        "PGUSER": "citus",
        "PGPASSWORD": "Abc!12&x",
        "PGSSLMODE": "require",
    }
    bare = ConnectionParams.from_jdbc_url("jdbc:postgresql://127.0.0.1:6432/x").libpq_env()
    assert bare == {"PGHOST": "127.0.0.1", "PGPORT": "6432", "PGDATABASE": "x"}


def test_tls_files_in_the_url_reach_libpq_psql_and_jdbc():
    params = ConnectionParams.from_jdbc_url(
        "jdbc:postgresql://db:5432/citus?user=u&password=p&sslmode=verify-full"
        "&sslrootcert=/ca.crt&sslcert=/c.crt&sslkey=/c.key&ApplicationName=x"
    )
    kwargs = params.psycopg_kwargs("app", 5)
    assert {k: kwargs[k] for k in ("sslmode", "sslrootcert", "sslcert", "sslkey")} == {
        "sslmode": "verify-full",
        "sslrootcert": "/ca.crt",
        "sslcert": "/c.crt",
        "sslkey": "/c.key",
    }
    assert "ApplicationName" not in kwargs  # a JDBC-only option stays out of libpq's
    env = params.libpq_env()
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"], env["PGSSLCERT"], env["PGSSLKEY"]) == (
        "verify-full",
        "/ca.crt",
        "/c.crt",
        "/c.key",
    )
    assert "sslrootcert=%2Fca.crt" in params.jdbc_url()
