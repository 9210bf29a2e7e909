"""Integration tests run against the local stack (`make up`); they fail, not skip, without it."""

from __future__ import annotations

import socket

import pytest

SERVICES = {
    "postgres": 55432,
    "kafka": 59092,
    "kafka SASL_SSL": 59093,
    "object store": 59000,
    "key vault": 58443,
}


def _open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def stack_is_up():
    down = [name for name, port in SERVICES.items() if not _open(port)]
    if down:
        pytest.fail(f"local stack not running ({', '.join(down)}): run `make up`", pytrace=False)
