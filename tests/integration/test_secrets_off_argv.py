"""No secret on a command line: /proc/<pid>/cmdline is readable by every local user, so the
processes a job or the stack starts must get keys, passwords and tokens some other way (their
environment, a pipe, or a file only their user can read). These tests look for the values."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

from devkit.ports import free_port
from devkit.processes import process_tree, showing_any
from tests.conftest import PROJECT_DIR

KEYVAULT_SH = PROJECT_DIR / "scripts" / "stack" / "keyvault.sh"

# curl as keyvault.sh finds it on PATH: records its arguments, then runs the real one
CURL_RECORDER = """#!/bin/sh
printf '%s\\n' "$*" >>"$CURL_ARGV_LOG"
exec {curl} "$@"
"""


def test_keyvault_script_passes_no_header_or_token_on_curls_command_line(tmp_path):
    """The stack's vault started, seeded and listed by keyvault.sh (its own folder and ports):
    every curl it runs is recorded, and none has the identity header, a bearer token or a
    seeded value among its arguments."""
    stack, shims = tmp_path / "stack", tmp_path / "bin"
    stack.mkdir()
    shims.mkdir()
    header = "identity-" + uuid.uuid4().hex
    seeded = {"Argv-Check-One": "v1-" + uuid.uuid4().hex, "Argv-Check-Two": "v2 with = and ;"}
    secrets_file = stack / "secrets.env"
    secrets_file.write_text(
        "".join(f"{k}={v}\n" for k, v in {"KEYVAULT_IDENTITY_HEADER": header, **seeded}.items())
    )
    secrets_file.chmod(0o600)
    curl = shutil.which("curl")
    assert curl is not None
    recorder = shims / "curl"
    recorder.write_text(CURL_RECORDER.format(curl=curl))
    recorder.chmod(0o755)
    argv_log = tmp_path / "curl-argv.log"
    env = {
        **{k: v for k, v in os.environ.items() if k != "LOWKEY_VAULT_JAR"},
        "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
        "STACK_DIR": str(stack),
        "KEYVAULT_PORT": str(free_port()),
        "KEYVAULT_TOKEN_PORT": str(free_port()),
        "CURL_ARGV_LOG": str(argv_log),
    }

    def keyvault(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(KEYVAULT_SH), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    try:
        started = keyvault("start")
        assert started.returncode == 0, started.stdout + started.stderr
        status = keyvault("status")
    finally:
        keyvault("stop")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "secrets=2" in status.stdout  # the tokens worked: seeded, then listed
    calls = argv_log.read_text().splitlines()
    assert any("/oauth2/token" in call for call in calls)
    assert any("/secrets/Argv-Check-One" in call for call in calls)
    values = [header, *seeded.values()]
    shown = [i for i, call in enumerate(calls) if any(v in call for v in values)]
    assert shown == [], f"curl calls {shown} show a secret value on the command line"
    assert not [call for call in calls if "Bearer" in call or "IDENTITY-HEADER:" in call]


# a local session built as a job builds it, with ADLS account-key auth and S3 keys (read from
# stdin); it says whether the keys reached its JVM, then waits for another line
LOCAL_SESSION = """
import json, sys
from pydantic import SecretStr
from clickstream_pipeline.core.config import load_config
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.core.spark import build_spark

account, key, s3_secret = json.loads(sys.stdin.readline())
cfg = load_config("local", ["spark.master=local[1]", "storage.adls_auth=account_key"], environ={})
spark_cfg = cfg.spark.model_copy(update={"jars_dir": None, "class_archive": False})
secrets = Secrets(
    {
        "adls_account_name": SecretStr(account),
        "adls_account_key": SecretStr(key),
        "s3_access_key": SecretStr("argv-check-access"),
        "s3_secret_key": SecretStr(s3_secret),
    },
    "test",
)
spark = build_spark(cfg.model_copy(update={"spark": spark_cfg}), secrets)
hadoop = spark.sparkContext._jsc.hadoopConfiguration()
print(json.dumps([hadoop.get(f"fs.azure.account.key.{account}.dfs.core.windows.net"),
                  hadoop.get("fs.s3a.secret.key")]), flush=True)
sys.stdin.readline()
spark.stop()
"""


def test_a_local_sessions_jvm_gets_the_storage_keys_off_its_command_line():
    account = "clickstreamargv"
    key, s3_secret = f"adls+{uuid.uuid4().hex}/a==", "s3-" + uuid.uuid4().hex
    child = subprocess.Popen(
        [sys.executable, "-c", LOCAL_SESSION],
        cwd=PROJECT_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        child.stdin.write(json.dumps([account, key, s3_secret]) + "\n")
        child.stdin.flush()
        arrived = json.loads(child.stdout.readline() or "null")
        tree = process_tree(child.pid)
        child.stdin.write("done\n")
        child.stdin.flush()
        assert child.wait(timeout=120) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    assert arrived == [key, s3_secret]  # both reached the JVM's Hadoop settings
    assert len(tree) >= 2  # the Python driver and its JVM
    assert showing_any(tree, [key, s3_secret]) == {}
