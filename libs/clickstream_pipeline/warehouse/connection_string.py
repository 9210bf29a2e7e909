"""The database secret's one parser and builder, and the weakest sslmode a host may be given.

Two forms are read:
- a JDBC URL, as Azure's portal gives it:
  `jdbc:postgresql://host:5432/citus?user=citus&password=...&sslmode=verify-full`. The query is
  split on `&` only and each part percent-decoded. A value is written percent-encoded where a
  raw character would be ambiguous: `#` as %23 (a URL ends at `#`), `+` as %2B (JDBC drivers
  read `+` as a space), `&` as %26, `%` as %25; a raw `#` or `+`, a `%` not followed by two hex
  digits, a part without `=` and a key given twice are refused. Spaces, quotes and
  backslashes may be raw or encoded (%20, %27, %22, %5C).
- libpq's `key=value` pairs, read by libpq itself (psycopg2's `parse_dsn`): a value with a
  space, `'` or `\\` goes in single quotes, with `\\'` and `\\\\` inside. A backslash outside
  quotes (libpq drops it) and a key given twice are refused.

postgresql:// URIs and `user:password@` before the host are refused. Errors name keys, hosts
and settings, never a value that could hold the password. `check_sslmode` refuses an sslmode
below the configured minimum for the host (`database.min_sslmode`, or
`database.loopback_min_sslmode` for loopback hosts and Unix sockets).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

import psycopg2
from psycopg2.extensions import make_dsn, parse_dsn
from pydantic import SecretStr

from clickstream_pipeline.core.config import SslMode
from clickstream_pipeline.core.errors import DatabaseConfigError

JDBC_PREFIX = "jdbc:postgresql://"
DEFAULT_PORT = 5432
DEFAULT_DBNAME = "postgres"
SSL_MODES: tuple[str, ...] = get_args(SslMode)  # weakest first
LIBPQ_DEFAULT_SSLMODE = "prefer"
DEFAULT_MIN_SSLMODE = "verify-full"
DEFAULT_LOOPBACK_MIN_SSLMODE = "disable"
TLS_FILE_KEYS = ("sslrootcert", "sslcert", "sslkey")
# the keys this parser reads itself (any other JDBC option is kept for JDBC clients)
READ_KEYS = ("host", "port", "dbname", "user", "password", "sslmode", *TLS_FILE_KEYS)
HOW_TO_ENCODE = (
    "percent-encode the value (urllib.parse.quote(value, safe='') in Python): "
    "# as %23, + as %2B, & as %26, % as %25, a space as %20"
)
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_LIBPQ_SPACE = " \t\n\r\f\v"


@dataclass(frozen=True)
class ConnectionFields:
    """What a connection string says; `options` holds its other keys (JDBC-only ones, and
    the TLS files)."""

    host: str
    port: int
    dbname: str
    user: str | None
    password: SecretStr | None = field(default=None, repr=False)
    sslmode: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def parse_connection_string(text: str) -> ConnectionFields:
    """A JDBC URL or libpq key=value pairs; DatabaseConfigError when it cannot be read as
    written."""
    stripped = text.strip("\r\n")  # a line end a secret store kept; spaces may be data
    if stripped.startswith(JDBC_PREFIX):
        return _parse_jdbc(stripped)
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", stripped):
        raise DatabaseConfigError(
            "connection string must start with jdbc:postgresql:// (or be libpq key=value "
            "pairs: host=... dbname=... user=... password='...' sslmode=verify-full)"
        )
    return _parse_conninfo(stripped)


def _name(key: str) -> str:
    """A key as errors show it: a key the parser reads by name, else "an option" (a key can
    be a fragment of a password with a raw `&`)."""
    return f"{key!r}" if key in READ_KEYS or key in ("ssl", "sslfactory") else "an option"


def _decode(raw: str, what: str) -> str:
    if "+" in raw:
        raise DatabaseConfigError(
            f"connection string: {what} has a raw '+', which JDBC drivers read as a space: "
            f"{HOW_TO_ENCODE}"
        )
    if _BAD_PERCENT.search(raw):
        raise DatabaseConfigError(
            f"connection string: {what} has a '%' not followed by two hex digits: {HOW_TO_ENCODE}"
        )
    try:
        return urllib.parse.unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise DatabaseConfigError(
            f"connection string: {what} percent-decodes to bytes that are not UTF-8"
        ) from None


def _parse_jdbc(text: str) -> ConnectionFields:
    rest = text[len(JDBC_PREFIX) :]
    if "#" in rest:
        raise DatabaseConfigError(
            f"connection string has a raw '#', where a URL ends: {HOW_TO_ENCODE}"
        )
    address, _, query = rest.partition("?")
    authority, _, path = address.partition("/")
    if "@" in authority:
        raise DatabaseConfigError(
            "connection string has user or password before the host (user:password@host), "
            "which PostgreSQL's JDBC driver does not read: give them as ?user=...&password=..."
        )
    host, port = _host_and_port(authority)
    values: dict[str, str] = {}
    after = "the start of the query"
    for part in query.split("&") if query else []:
        if not part:
            continue
        raw_key, equals, raw_value = part.partition("=")
        if not equals:
            raise DatabaseConfigError(
                f"connection string: a part of the query after {after} has no '=' (a raw '&' "
                f"inside a value?): {HOW_TO_ENCODE}"
            )
        key = _decode(raw_key, "a key")
        if not key:
            raise DatabaseConfigError("connection string: a part of the query has no key")
        if key in values:
            raise DatabaseConfigError(f"connection string gives {_name(key)} twice")
        values[key] = _decode(raw_value, f"the value of {_name(key)}")
        after = _name(key)
    for key in ("host", "port", "dbname"):
        if key in values:
            raise DatabaseConfigError(
                f"connection string: give the {key} in the URL's address, not as ?{key}="
            )
    dbname = _decode(path, "the database name") or DEFAULT_DBNAME
    return _fields(host, port, dbname, values)


def _host_and_port(authority: str) -> tuple[str, int]:
    if "," in authority:
        raise DatabaseConfigError("connection string names several hosts: give one")
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else after
        valid_host = bool(bracket) and _is_ip(host)
    else:
        host, _, port_text = authority.partition(":")
        valid_host = bool(_HOST_NAME.fullmatch(host))
    if not host:
        raise DatabaseConfigError("connection string has no host")
    if not valid_host:
        raise DatabaseConfigError("connection string's host is not a host name or IP address")
    return host, _port(port_text)


def _port(text: str) -> int:
    if not text:
        return DEFAULT_PORT
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise DatabaseConfigError("connection string has an invalid port")
    return int(text)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _parse_conninfo(text: str) -> ConnectionFields:
    keys = _conninfo_keys(text)
    unknown = [k for k in keys if k not in READ_KEYS]
    if unknown:
        raise DatabaseConfigError(
            f"connection string has a key this project does not read ({len(unknown)} of them): "
            f"give only {', '.join(READ_KEYS)}"
        )
    try:
        values = parse_dsn(text)
    except psycopg2.ProgrammingError:
        raise DatabaseConfigError(
            "connection string is not libpq key=value pairs libpq can read (its message is "
            "not shown: it quotes the string): quote a value with a space, ' or \\ as "
            "'...' with \\' and \\\\ inside"
        ) from None
    host = values.pop("host", "")
    if not host:
        raise DatabaseConfigError("connection string has no host")
    if "," in host:
        raise DatabaseConfigError("connection string names several hosts: give one")
    if not host.startswith("/") and not _HOST_NAME.fullmatch(host) and not _is_ip(host):
        raise DatabaseConfigError("connection string's host is not a host name or IP address")
    port = _port(values.pop("port", ""))
    dbname = values.pop("dbname", "") or DEFAULT_DBNAME
    return _fields(host, port, dbname, values)


def _conninfo_keys(text: str) -> list[str]:
    """The keys of libpq key=value pairs, in order, walked as libpq walks them; refuses a key
    given twice and a backslash outside quotes (both of which libpq takes silently)."""
    keys: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _LIBPQ_SPACE:
            i += 1
        if i >= n:
            return keys
        start = i
        while i < n and text[i] != "=" and text[i] not in _LIBPQ_SPACE:
            i += 1
        key = text[start:i]
        while i < n and text[i] in _LIBPQ_SPACE:
            i += 1
        if i >= n or text[i] != "=":
            raise DatabaseConfigError(
                "connection string is neither a JDBC URL nor libpq key=value pairs (a value "
                "with a space must be quoted: password='...' with \\' and \\\\ inside)"
            )
        i += 1
        while i < n and text[i] in _LIBPQ_SPACE:
            i += 1
        if i < n and text[i] == "'":
            i += 1
            while i < n and text[i] != "'":
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                raise DatabaseConfigError(
                    f"connection string: the quoted value of {_name(key)} has no closing "
                    "quote (write a ' inside as \\' and a \\ as \\\\)"
                )
            i += 1
        else:
            while i < n and text[i] not in _LIBPQ_SPACE:
                if text[i] == "\\":
                    raise DatabaseConfigError(
                        f"connection string: the value of {_name(key)} has a backslash outside "
                        "quotes, which libpq drops: write the value as '...' with \\' for a "
                        "quote and \\\\ for a backslash"
                    )
                i += 1
        if key in keys:
            raise DatabaseConfigError(f"connection string gives {_name(key)} twice")
        keys.append(key)


def _fields(host: str, port: int, dbname: str, values: dict[str, str]) -> ConnectionFields:
    user = values.pop("user", "") or None
    password = values.pop("password", "")
    sslmode = values.pop("sslmode", None)
    if sslmode is not None and sslmode not in SSL_MODES:
        raise DatabaseConfigError(
            f"connection string's sslmode is not one of {', '.join(SSL_MODES)}"
        )
    return ConnectionFields(
        host=host,
        port=port,
        dbname=dbname,
        user=user,
        password=SecretStr(password) if password else None,
        sslmode=sslmode,
        options=values,
    )


def is_loopback(host: str) -> bool:
    """A Unix socket, localhost, or an address in 127.0.0.0/8 or ::1."""
    if host.startswith(("/", "@")) or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_sslmode(
    host: str,
    sslmode: str | None,
    options: Mapping[str, str],
    min_sslmode: str = DEFAULT_MIN_SSLMODE,
    loopback_min_sslmode: str = DEFAULT_LOOPBACK_MIN_SSLMODE,
) -> None:
    """Refuse a connection string whose sslmode for `host` is below the minimum (no sslmode
    is libpq's default, prefer, which falls back to no TLS at all)."""
    setting, minimum = (
        ("database.loopback_min_sslmode", loopback_min_sslmode)
        if is_loopback(host)
        else ("database.min_sslmode", min_sslmode)
    )
    given = sslmode or LIBPQ_DEFAULT_SSLMODE
    if SSL_MODES.index(given) < SSL_MODES.index(minimum):
        said = (
            "no sslmode (libpq then uses prefer, which falls back to no TLS)"
            if sslmode is None
            else f"sslmode={sslmode}"
            + (" (encryption with no certificate check)" if sslmode == "require" else "")
        )
        raise DatabaseConfigError(
            f"connection string reaches {host} with {said}, below {setting} = {minimum!r}: "
            f"write &sslmode={minimum} (or sslmode={minimum}) in it, with the server's CA "
            "as sslrootcert=PATH where a verify mode needs one (sslrootcert=system: the "
            f"system's CAs), or lower {setting} (e.g. --set {setting}={given}) to accept it"
        )
    factory = options.get("sslfactory", "")
    if factory.endswith("NonValidatingFactory") and SSL_MODES.index(minimum) > SSL_MODES.index(
        "require"
    ):
        raise DatabaseConfigError(
            f"connection string for {host} sets sslfactory to NonValidatingFactory, which "
            f"makes JDBC skip the certificate check {setting} = {minimum!r} asks for: remove it"
        )


def libpq_conninfo(keywords: Mapping[str, object]) -> str:
    """libpq's `key='value'` form of connection keywords (unset ones left out)."""
    return make_dsn(**{k: v for k, v in keywords.items() if v is not None})


def jdbc_url(host: str, port: int, dbname: str, query: Mapping[str, str]) -> str:
    """A JDBC URL, every value percent-encoded (so `parse_connection_string` reads it back)."""
    address = f"[{host}]" if ":" in host else host
    encoded = "&".join(
        f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}"
        for k, v in query.items()
    )
    suffix = f"?{encoded}" if encoded else ""
    return f"{JDBC_PREFIX}{address}:{port}/{urllib.parse.quote(dbname, safe='')}{suffix}"
