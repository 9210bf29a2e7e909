"""Integration tests run against the local stack (`make up`); they fail, not skip, without it.

Tests that take the `tier` fixture run twice: against the plain PostgreSQL server and against
the Citus cluster (coordinator + 2 workers). The Citus tier is skipped, with the reason, only
where the stack found no Citus to run (`.stack/citus.unavailable`, written by `make up`).
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.secrets import Secrets, resolve_secrets
from clickstream_pipeline.core.spark import storage_conf
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.db import CITUS_UNAVAILABLE, bootstrap
from devkit.stack import STACK_SECRETS
from tests.conftest import PROJECT_DIR, config_for_tests

SERVICES = {
    "postgres": 55432,
    "kafka": 59092,
    "kafka SASL_SSL": 59093,
    "object store": 59000,
    "key vault": 58443,
}
CITUS_PORTS = {"citus coordinator": 55433, "citus worker 1": 55434, "citus worker 2": 55435}
LOCAL_SECRETS = STACK_SECRETS  # the secrets `make up` writes


# modules by their time in a serial run, longest first (the rest keep their order after these)
LONGEST_FIRST = {
    name: rank
    for rank, name in enumerate(
        (
            "test_spark_cluster",
            "test_ingest_failures",
            "test_benchmarks",
            "test_ingest",
            "test_rollups",
            "test_dashboard",
            "test_spark_submit",
            "test_dashboard_rollups",
        )
    )
}


def _open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    """Integration tests are marked so. For `pytest -n 2 --dist loadgroup`: a module's tests
    stay on one worker (they share its fixtures: a cluster, a dashboard, a loaded database)
    unless it (or the test) is marked `independent`. The outage tests, which stop the stack's
    servers, run in `make test`'s second phase beside the unit tests: one group for those that
    stop a server both tiers use (Kafka, the object store), one per tier for its database's;
    `outage_lock` keeps the first kind from running beside any other."""
    # the longest modules first, so that no worker starts one while the other is nearly done
    items.sort(key=lambda item: LONGEST_FIRST.get(Path(str(item.fspath)).stem, len(LONGEST_FIRST)))
    for item in items:
        if "tests/integration" not in str(item.fspath):
            continue
        item.add_marker(pytest.mark.integration)
        if outage := item.get_closest_marker("outage"):
            # a shared server's outage in one group; a database's, with its tier's others
            tier = getattr(item, "callspec", None) and item.callspec.params.get("tier")
            held = "shared" if outage.kwargs.get("shared") else tier
            item.add_marker(pytest.mark.xdist_group(f"outage-{held}"))
        elif not item.get_closest_marker("independent"):
            item.add_marker(pytest.mark.xdist_group(Path(str(item.fspath)).stem))


@pytest.fixture(autouse=True)
def outage_lock(request: pytest.FixtureRequest, run_root: Path) -> Iterator[None]:
    """An outage of a server both tiers use (`outage(shared=True)`) runs alone; outages of one
    tier's database may run beside the other tier's."""
    outage = request.node.get_closest_marker("outage")
    if outage is None:
        yield
        return
    mode = fcntl.LOCK_EX if outage.kwargs.get("shared") else fcntl.LOCK_SH
    with (run_root / "outage.lock").open("w") as lock:
        fcntl.flock(lock, mode)
        yield


@pytest.fixture(scope="session", autouse=True)
def stack_is_up():
    wanted = dict(SERVICES)
    if not CITUS_UNAVAILABLE.is_file():
        wanted.update(CITUS_PORTS)
    down = [name for name, port in wanted.items() if not _open(port)]
    if down:
        pytest.fail(f"local stack not running ({', '.join(down)}): run `make up`", pytrace=False)


@pytest.fixture(scope="session")
def local_secrets(local_config: Config) -> Secrets:
    """The stack's secrets (`make up` writes them)."""
    return resolve_secrets(local_config.secrets, optional=LOCAL_SECRETS)


@pytest.fixture(scope="session")
def spark(spark: SparkSession, local_config: Config, local_secrets: Secrets) -> SparkSession:
    """The run's one session, given the stack's s3a:// credentials whichever test built it
    (a unit test's, without secrets, when unit tests ran first)."""
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in storage_conf(local_config.storage, local_secrets).items():
        hadoop.set(key, value)
    return spark


@dataclass(frozen=True)
class Tier:
    """One database server the pipeline runs against, with the env that points at it."""

    name: str  # "postgres" or "citus"
    env: str  # the config env: "local" or "local-citus"
    config: Config
    secrets: Secrets

    @property
    def db(self) -> ConnectionParams:
        """The tier's pipeline database (bootstrapped)."""
        return ConnectionParams.from_jdbc_url(self.secrets["database"])

    @property
    def citus(self) -> bool:
        return self.name == "citus"


TIER_ENVS = {"postgres": "local", "citus": "local-citus"}


@pytest.fixture(scope="session", params=list(TIER_ENVS))
def tier(request) -> Tier:
    if request.param == "citus" and CITUS_UNAVAILABLE.is_file():
        pytest.skip(f"Citus tier skipped: {CITUS_UNAVAILABLE.read_text().strip()}")
    env = TIER_ENVS[request.param]
    cfg = config_for_tests(env)
    secrets = resolve_secrets(cfg.secrets, optional=LOCAL_SECRETS)
    found = Tier(request.param, env, cfg, secrets)
    bootstrap(found.db)
    return found


@pytest.fixture(scope="session")
def db(tier: Tier) -> ConnectionParams:
    """The current tier's pipeline database."""
    return tier.db


@pytest.fixture(scope="session")
def run_root(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The run's temporary folder, one for all of xdist's workers."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if worker_id != "master" else root  # above each worker's own


@contextlib.contextmanager
def checkout_build(run_root: Path) -> Iterator[None]:
    """One wheel build in the checkout at a time: builds share its build/ folder and egg-info."""
    with (run_root / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def wheel(run_root: Path) -> Path:
    """The wheel, built from this checkout once per run, for every worker."""
    out = run_root / "dist"
    with checkout_build(run_root):
        if not any(out.glob("clickstream_pipeline-*.whl")):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "build",
                    "--wheel",
                    "--no-isolation",
                    "--outdir",
                    str(out),
                    str(PROJECT_DIR),
                ],
                check=True,
                capture_output=True,
                timeout=300,
            )
    (built,) = out.glob("clickstream_pipeline-*.whl")
    return built
