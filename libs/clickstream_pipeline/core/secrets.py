"""One secret resolver for every job: Key Vault, a Databricks secret scope, env vars or a file.

Jobs resolve the secrets they need once, at start-up (`resolve_secrets`), and pass the result
down. Values are `pydantic.SecretStr`: `repr`, `str` and logs show `**********`; only
`.get_secret_value()` at the point of use reveals them. Errors name the secret and the backend,
never a value.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from pydantic import SecretStr

from clickstream_pipeline.core.config import SecretsConfig
from clickstream_pipeline.core.errors import SecretError

Fetch = Callable[[str], "str | None"]


class Secrets:
    """Resolved secrets by logical key (`database`, `kafka_connection_string`, ...)."""

    def __init__(self, values: Mapping[str, SecretStr], backend: str) -> None:
        self._values = dict(values)
        self.backend = backend

    def __getitem__(self, key: str) -> SecretStr:
        try:
            return self._values[key]
        except KeyError:
            raise SecretError(f"secret {key!r} was not resolved at start-up") from None

    def get(self, key: str) -> SecretStr | None:
        return self._values.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def without(self, *keys: str) -> Secrets:
        return Secrets({k: v for k, v in self._values.items() if k not in keys}, self.backend)

    def __repr__(self) -> str:
        return f"Secrets(backend={self.backend!r}, keys={sorted(self._values)})"


def resolve_secrets(
    cfg: SecretsConfig,
    required: Iterable[str] = (),
    optional: Iterable[str] = (),
    fetch: Fetch | None = None,
) -> Secrets:
    """Fetch each named secret once; a missing required one fails naming secret and backend."""
    fetch = fetch or backend_fetcher(cfg)
    values: dict[str, SecretStr] = {}
    for key, is_required in [(k, True) for k in required] + [(k, False) for k in optional]:
        name = cfg.name_of(key)
        value = fetch(name)
        if value is None or value == "":
            if is_required:
                raise SecretError(f"secret {name!r} (for {key}) not found in {describe(cfg)}")
            continue
        values[key] = SecretStr(value)
    return Secrets(values, cfg.backend)


def describe(cfg: SecretsConfig) -> str:
    if cfg.backend == "file":
        return f"secret file {cfg.file}"
    if cfg.backend == "keyvault":
        return f"Key Vault {cfg.vault_url}"
    if cfg.backend == "databricks":
        return f"Databricks secret scope {cfg.scope!r}"
    return "environment variables"


def backend_fetcher(cfg: SecretsConfig) -> Fetch:
    if cfg.backend == "env":
        return env_fetcher(os.environ)
    if cfg.backend == "file":
        if not cfg.file:
            raise SecretError("secrets.backend is 'file' but secrets.file is not set")
        return file_fetcher(Path(cfg.file))
    if cfg.backend == "keyvault":
        return keyvault_fetcher(cfg)
    return databricks_fetcher(cfg.scope)


def env_variable_name(secret_name: str) -> str:
    """`Database-Connection-String` -> `DATABASE_CONNECTION_STRING`."""
    return re.sub(r"[^A-Za-z0-9]", "_", secret_name).upper()


def env_fetcher(environ: Mapping[str, str]) -> Fetch:
    def fetch(name: str) -> str | None:
        return environ.get(name) or environ.get(env_variable_name(name))

    return fetch


def read_secret_file(path: Path) -> dict[str, str]:
    """Parse `NAME=VALUE` lines (blank lines and `#` comments skipped; values taken verbatim)
    of a file only its owner may read or write (mode 600 or 400)."""
    if not path.is_file():
        raise SecretError(f"secret file {path} does not exist (did `make up` run?)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        # as libpq refuses such a ~/.pgpass and ssh such a key
        raise SecretError(
            f"secret file {path} is open to other users (mode {mode:03o}): "
            f"make it readable by its owner only, `chmod 600 {path}`"
        )
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise SecretError(f"secret file {path}, line {number}: expected NAME=VALUE")
        values[name.strip()] = value
    return values


def file_fetcher(path: Path) -> Fetch:
    values = read_secret_file(path)
    return values.get


def keyvault_fetcher(cfg: SecretsConfig) -> Fetch:
    """Azure Key Vault through azure-identity's DefaultAzureCredential.

    DefaultAzureCredential covers a service principal (AZURE_TENANT_ID, AZURE_CLIENT_ID,
    AZURE_CLIENT_SECRET), managed identity, workload identity and the Azure CLI login.
    """
    from azure.core.exceptions import AzureError, ResourceNotFoundError
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    if not cfg.vault_url:
        raise SecretError("secrets.backend is 'keyvault' but secrets.vault_url is not set")
    options: dict[str, object] = {
        "verify_challenge_resource": cfg.vault_verify_challenge_resource,
    }
    if cfg.vault_ca_file:
        options["connection_verify"] = cfg.vault_ca_file
    client = SecretClient(
        vault_url=cfg.vault_url,
        credential=DefaultAzureCredential(exclude_interactive_browser_credential=True),
        **options,
    )

    def fetch(name: str) -> str | None:
        try:
            return client.get_secret(name).value
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            # Azure's messages carry no secret values, only the failure; keep its class and text.
            message = str(exc).splitlines()[0] if str(exc) else ""
            raise SecretError(
                f"Key Vault {cfg.vault_url}: reading secret {name!r} failed: "
                f"{type(exc).__name__}: {message}"
            ) from None

    return fetch


def databricks_fetcher(scope: str) -> Fetch:
    """A Databricks secret scope (the lab's Key Vault-backed `key-vault-secrets`)."""
    try:
        from databricks.sdk.runtime import dbutils
    except ImportError:
        raise SecretError(
            "secrets.backend is 'databricks' but dbutils is not available: "
            "this backend only works on a Databricks cluster"
        ) from None

    def fetch(name: str) -> str | None:
        try:
            return dbutils.secrets.get(scope=scope, key=name)
        except Exception as exc:  # dbutils raises a generic py4j/IllegalArgument error
            if "does not exist" in str(exc):
                return None
            raise SecretError(
                f"Databricks secret scope {scope!r}: reading {name!r} failed: {type(exc).__name__}"
            ) from None

    return fetch
