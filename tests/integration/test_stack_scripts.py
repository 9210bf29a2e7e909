"""The stack scripts are idempotent and report what runs where."""

import subprocess

from devkit.db import CITUS_UNAVAILABLE
from tests.conftest import PROJECT_DIR


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROJECT_DIR / "scripts" / "stack.sh"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_second_up_changes_nothing_and_says_so():
    up = run("up")
    assert up.returncode == 0, up.stderr
    lines = [line for line in up.stdout.splitlines() if line.startswith("[stack]")]
    services = ["postgres", "kafka", "objectstore"]
    if not CITUS_UNAVAILABLE.is_file():
        services.append("citus")
    for service in services:
        assert any(
            line.startswith(f"[stack] {service}: already running") and "nothing changed" in line
            for line in lines
        ), up.stdout


def test_status_names_each_service_and_port():
    status = run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    for expected in (
        "postgres: UP   127.0.0.1:55432",
        "kafka: UP",
        "59093",
        "objectstore: UP   http://127.0.0.1:59000",
    ):
        assert expected in status.stdout
    if not CITUS_UNAVAILABLE.is_file():
        for node in ("coordinator 127.0.0.1:55433", "worker1 127.0.0.1:55434", "worker2"):
            assert f"citus: UP   {node}" in status.stdout
        assert "workers in the metadata: 127.0.0.1:55434 127.0.0.1:55435" in status.stdout
        assert "citus 13.2-1" in status.stdout and "pg_partman 5.1.0" in status.stdout
    assert "password" not in status.stdout.lower().replace("password=***", "")
