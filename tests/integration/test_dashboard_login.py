"""The dashboard's login: off loopback it needs the Dashboard-Password secret; with it, every
page and callback asks for HTTP basic auth."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.ports import free_port
from tests.conftest import PROJECT_DIR
from tests.integration.conftest import Tier
from tests.integration.test_dashboard import jdbc_url

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-for-the-test"


def dashboard_command(port: int, host: str) -> list[str]:
    return [
        sys.executable, "-m", "clickstream_pipeline.jobs.dashboard", "--env", "local",
        "--set", "secrets.backend=env", "--host", host, "--port", str(port), "--user", "analyst",
    ]  # fmt: skip


def status_of(url: str, auth: tuple[str, str] | None = None, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # not listening yet
        return 0


@pytest.fixture
def db_of_tier(tier: Tier, db: ConnectionParams) -> ConnectionParams:
    if tier.citus:
        pytest.skip("the login does not depend on the server: tested on plain PostgreSQL")
    return db


@pytest.fixture
def behind_login(db_of_tier: ConnectionParams, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_CONNECTION_STRING": jdbc_url(db_of_tier),
        "DASHBOARD_PASSWORD": PASSWORD,
    }
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            dashboard_command(port, "0.0.0.0"),
            cwd=PROJECT_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while status_of(url) not in (200, 401):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
            time.sleep(0.3)
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_off_loopback_without_a_password_it_refuses_to_start(db_of_tier: ConnectionParams):
    env = {k: v for k, v in os.environ.items() if k != "DASHBOARD_PASSWORD"}
    env["DATABASE_CONNECTION_STRING"] = jdbc_url(db_of_tier)
    done = subprocess.run(
        dashboard_command(free_port(), "0.0.0.0"),
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Dashboard-Password" in done.stderr + done.stdout
    assert db_of_tier.password is not None
    assert db_of_tier.password.get_secret_value() not in done.stderr + done.stdout


def test_every_page_and_callback_needs_the_login(behind_login: tuple[str, Path]):
    url, log = behind_login
    assert status_of(url) == 401
    assert status_of(url, ("analyst", "wrong")) == 401
    assert status_of(url, ("someone", PASSWORD)) == 401
    assert status_of(url + "_dash-layout") == 401
    callback = json.dumps({"output": "kpi-events.children", "inputs": [], "state": []})
    assert status_of(url + "_dash-update-component", data=callback.encode()) == 401
    assert status_of(url, ("analyst", PASSWORD)) == 200
    assert status_of(url + "_dash-layout", ("analyst", PASSWORD)) == 200
    text = log.read_text(errors="replace")
    assert "login as analyst" in text and PASSWORD not in text
