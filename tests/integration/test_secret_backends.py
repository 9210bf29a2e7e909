"""Key Vault, env and file backends resolve the same secrets; failures are clear and value-free."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickstream_pipeline.core.config import load_config
from clickstream_pipeline.core.errors import SecretError
from clickstream_pipeline.core.secrets import env_variable_name, read_secret_file, resolve_secrets

KEYS = ("database", "kafka_server", "kafka_connection_string", "s3_access_key", "s3_secret_key")
TOKEN_URL = "http://127.0.0.1:58080/metadata/identity/oauth2/token"


@pytest.fixture
def vault_identity(monkeypatch, local_config):
    """The managed-identity environment azure-identity reads (as on an Azure host)."""
    header = read_secret_file(Path(local_config.secrets.file))["KEYVAULT_IDENTITY_HEADER"]
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", TOKEN_URL)
    monkeypatch.setenv("IDENTITY_HEADER", header)
    return header


def reveal(secrets) -> dict[str, str]:
    return {key: secrets[key].get_secret_value() for key in KEYS}


def test_key_vault_env_and_file_backends_resolve_the_same_secrets(
    local_config, vault_identity, monkeypatch
):
    from_file = reveal(resolve_secrets(local_config.secrets, KEYS))
    vault_cfg = load_config("local", ["secrets.backend=keyvault"], environ={}).secrets
    from_vault = reveal(resolve_secrets(vault_cfg, KEYS))
    for key in KEYS:
        monkeypatch.setenv(env_variable_name(local_config.secrets.name_of(key)), from_file[key])
    env_cfg = load_config("local", ["secrets.backend=env"], environ={}).secrets
    from_env = reveal(resolve_secrets(env_cfg, KEYS))
    assert from_file["database"].startswith("jdbc:postgresql://")
    assert from_vault == from_file == from_env


def test_missing_key_vault_secret_names_secret_and_vault(vault_identity):
    cfg = load_config(
        "local", ["secrets.backend=keyvault", "secrets.names.tenant_id=No-Such-Secret"], environ={}
    ).secrets
    with pytest.raises(SecretError, match=r"'No-Such-Secret' .* Key Vault https://localhost:58443"):
        resolve_secrets(cfg, ["tenant_id"])


def test_wrong_credential_fails_clearly_without_any_secret(
    local_config, vault_identity, monkeypatch
):
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-identity")
    cfg = load_config("local", ["secrets.backend=keyvault"], environ={}).secrets
    with pytest.raises(SecretError) as info:
        resolve_secrets(cfg, ["database"])
    message = str(info.value)
    assert "Key Vault https://localhost:58443" in message
    assert "Database-Connection-String" in message
    assert "ClientAuthenticationError" in message
    for value in read_secret_file(Path(local_config.secrets.file)).values():
        assert value not in message


def test_untrusted_vault_certificate_is_refused(vault_identity):
    cfg = load_config(
        "local", ["secrets.backend=keyvault", "secrets.vault_ca_file=''"], environ={}
    ).secrets
    with pytest.raises(SecretError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        resolve_secrets(cfg, ["database"])
