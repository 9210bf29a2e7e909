"""The database secret's one parser: JDBC URLs and libpq key=value pairs, percent-encoding,
awkward passwords, and the minimum sslmode a host must be reached with."""

from __future__ import annotations

import urllib.parse

import pytest
from psycopg2.extensions import parse_dsn
from pydantic import SecretStr

from clickstream_pipeline.core.config import load_config
from clickstream_pipeline.core.errors import ConfigError, DatabaseConfigError
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.warehouse.database import ConnectionParams, configured_params

REMOTE = "jdbc:postgresql://db.example.com:5432/citus?user=citus"
AWKWARD = ["#", "+", "&", "%", " ", "'", '"', "\\"]


def password_of(params: ConnectionParams) -> str | None:
    return params.password.get_secret_value() if params.password else None


def parse(text: str, **minimums: str) -> ConnectionParams:
    return ConnectionParams.from_connection_string(text, **minimums)


def conninfo_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@pytest.mark.parametrize("char", AWKWARD)
@pytest.mark.parametrize("form", ["jdbc", "conninfo"])
def test_a_password_written_as_documented_round_trips(form: str, char: str):
    password = f"pa{char}ss{char}"
    if form == "jdbc":
        text = f"{REMOTE}&password={urllib.parse.quote(password, safe='')}&sslmode=verify-full"
    else:
        text = (
            "host=db.example.com port=5432 dbname=citus user=citus "
            f"password={conninfo_quoted(password)} sslmode=verify-full"
        )
    params = parse(text)
    assert password_of(params) == password
    assert (params.host, params.port, params.dbname, params.user, params.sslmode) == (
        "db.example.com",
        5432,
        "citus",
        "citus",
        "verify-full",
    )
    assert password not in repr(params)


def test_every_awkward_character_at_once_survives_the_projects_own_builders():
    password = "".join(AWKWARD) + "x"
    params = parse(f"{REMOTE}&password={urllib.parse.quote(password, safe='')}&sslmode=verify-full")
    again = parse(params.jdbc_url(with_credentials=True))
    assert again == params and password_of(again) == password
    assert password not in params.jdbc_url()
    assert parse_dsn(params.conninfo())["password"] == password


# a raw character and the escape the error must name for it
REFUSED_RAW = {"#": "%23", "+": "%2B", "&": "%26", "%": "%25"}


@pytest.mark.parametrize(("char", "escape"), REFUSED_RAW.items())
def test_a_raw_ambiguous_character_in_a_jdbc_password_is_refused_saying_how_to_write_it(
    char: str, escape: str
):
    password = f"Sec{char}ret9"
    with pytest.raises(DatabaseConfigError) as refused:
        parse(f"{REMOTE}&password={password}&sslmode=verify-full")
    message = str(refused.value)
    assert escape in message and "percent-encode" in message
    for fragment in (password, "Sec", "ret9"):
        assert fragment not in message


@pytest.mark.parametrize("char", [" ", "'", '"', "\\"])
def test_a_raw_unambiguous_character_in_a_jdbc_password_is_kept_exactly(char: str):
    password = f"Sec{char}ret9"
    params = parse(f"{REMOTE}&password={password}&sslmode=verify-full")
    assert password_of(params) == password


@pytest.mark.parametrize(
    "pair",
    [
        "password=Sec ret9",  # unquoted space: libpq would read a keyword `ret9`
        "password=Sec\\ret9",  # unquoted backslash: libpq would drop it
        "password='Sec ret9",  # unterminated quote
    ],
)
def test_a_conninfo_password_libpq_would_misread_is_refused_without_echoing_it(pair: str):
    with pytest.raises(DatabaseConfigError) as refused:
        parse(f"host=db.example.com user=citus sslmode=verify-full {pair}")
    message = str(refused.value)
    assert "'" in message and "ret9" not in message and "Sec" not in message


@pytest.mark.parametrize(
    "text",
    [
        f"{REMOTE}&password=a&password=b&sslmode=verify-full",
        f"{REMOTE}&password=Secret9&sslmode=verify-full&sslmode=disable",
        "host=db.example.com password=Secret9 sslmode=verify-full sslmode=disable",
    ],
)
def test_a_key_given_twice_is_refused(text: str):
    with pytest.raises(DatabaseConfigError, match="twice") as refused:
        parse(text)
    assert "Secret9" not in str(refused.value)


def test_postgresql_uris_and_user_info_before_the_host_are_refused_without_echo():
    for text in (
        "postgresql://citus:Secret9@db.example.com/citus?sslmode=verify-full",
        "jdbc:postgresql://citus:Secret9@db.example.com/citus?sslmode=verify-full",
    ):
        with pytest.raises(DatabaseConfigError) as refused:
            parse(text)
        assert "Secret9" not in str(refused.value)


# -- the minimum sslmode -------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "[::1]", "localhost"])
@pytest.mark.parametrize("sslmode", [None, "disable", "require"])
def test_a_loopback_host_takes_any_sslmode_by_default(host: str, sslmode: str | None):
    suffix = f"&sslmode={sslmode}" if sslmode else ""
    params = parse(f"jdbc:postgresql://{host}:5432/citus?user=u&password=p{suffix}")
    assert params.sslmode == sslmode


def test_a_unix_socket_is_loopback():
    assert parse("host=/var/run/postgresql dbname=citus user=u").host == "/var/run/postgresql"


@pytest.mark.parametrize("sslmode", [None, "disable", "allow", "prefer", "require", "verify-ca"])
def test_a_remote_host_below_verify_full_is_refused_naming_host_and_setting(sslmode):
    suffix = f"&sslmode={sslmode}" if sslmode else ""
    with pytest.raises(DatabaseConfigError) as refused:
        parse(f"{REMOTE}&password=Secret9{suffix}")
    message = str(refused.value)
    assert "db.example.com" in message
    assert "database.min_sslmode" in message and "verify-full" in message
    assert "Secret9" not in message


def test_require_is_taken_from_a_remote_host_only_when_explicitly_allowed():
    portal = f"{REMOTE}&password=Secret9&sslmode=require"
    assert parse(portal, min_sslmode="require").sslmode == "require"
    assert parse(f"{REMOTE}&sslmode=verify-ca", min_sslmode="require").sslmode == "verify-ca"
    with pytest.raises(DatabaseConfigError, match="no certificate"):
        parse(portal)
    with pytest.raises(DatabaseConfigError, match="no sslmode"):
        parse(f"{REMOTE}&password=Secret9", min_sslmode="require")


def test_loopback_has_its_own_minimum():
    with pytest.raises(DatabaseConfigError, match=r"database\.loopback_min_sslmode") as refused:
        parse("jdbc:postgresql://127.0.0.1/citus?sslmode=prefer", loopback_min_sslmode="verify-ca")
    assert "127.0.0.1" in str(refused.value)


def test_an_unknown_sslmode_is_refused():
    with pytest.raises(DatabaseConfigError, match="sslmode"):
        parse(f"{REMOTE}&sslmode=verify_full")


def test_jdbcs_non_validating_factory_is_refused_where_certificates_must_be_checked():
    text = f"{REMOTE}&sslmode=verify-full&sslfactory=org.postgresql.ssl.NonValidatingFactory"
    with pytest.raises(DatabaseConfigError, match="sslfactory"):
        parse(text)
    assert parse(text, min_sslmode="require").options["sslfactory"].endswith("Factory")


def test_the_configured_minimum_applies_to_the_configured_secret():
    secrets = Secrets({"database": SecretStr(f"{REMOTE}&password=Secret9&sslmode=require")}, "t")
    with pytest.raises(DatabaseConfigError, match=r"database\.min_sslmode"):
        configured_params(load_config("local", environ={}), secrets)
    lowered = load_config("local", ["database.min_sslmode=require"], environ={})
    assert configured_params(lowered, secrets).sslmode == "require"


def test_the_minimum_settings_are_validated_config_keys():
    cfg = load_config("local", environ={})
    assert (cfg.database.min_sslmode, cfg.database.loopback_min_sslmode) == (
        "verify-full",
        "disable",
    )
    with pytest.raises(ConfigError, match="min_sslmode"):
        load_config("local", ["database.min_sslmode=verify"], environ={})


def test_a_line_end_around_the_secret_is_dropped_but_a_trailing_space_is_data():
    params = parse(f"{REMOTE}&sslmode=verify-full&password=Secret9%20\n")
    assert password_of(params) == "Secret9 "
    assert password_of(parse(f"{REMOTE}&sslmode=verify-full&password=Secret9 ")) == "Secret9 "
