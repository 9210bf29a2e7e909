"""A Spark Connect server for this project (`make spark-connect`), and what a client needs.

The server is Spark's own (`SparkConnectServer`, in pyspark's jars), started with
`spark-submit` and the session settings a local job gets (`spark.session_conf`): the resolved
jars, Delta's extensions and the object-store settings. No secret is on its command line: the
object store's keys reach it as the `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` environment
variables (S3A's default credential chain reads them), and the settings (the ADLS account key or
service principal among them) in a properties file only this user can read, removed once the
server listens (`spark.private_properties_file`). Its Python workers run
this interpreter, so they import the package as the jobs do. A job becomes its client with
`spark.remote = "sc://127.0.0.1:15002"` (see `spark.build_spark`).

Run: `python -m clickstream_pipeline.core.spark_connect --env local [--port 15002]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clickstream_pipeline.core.cli import config_from_args, job_parser, run_job
from clickstream_pipeline.core.config import Config
from clickstream_pipeline.core.errors import SparkSetupError
from clickstream_pipeline.core.secrets import Secrets, resolve_secrets
from clickstream_pipeline.core.spark import private_properties_file, session_conf

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
DEFAULT_PORT = 15002
STORE_KEYS = {"s3_access_key": "AWS_ACCESS_KEY_ID", "s3_secret_key": "AWS_SECRET_ACCESS_KEY"}
OPTIONAL_SECRETS = (
    *STORE_KEYS,
    "adls_account_name",
    "adls_account_key",
    "sp_client_id",
    "sp_client_key",
    "tenant_id",
)


def server_conf(cfg: Config, secrets: Secrets, port: int) -> dict[str, str]:
    """The settings of a server on 127.0.0.1:`port` (secrets among them: never on argv)."""
    return {
        **session_conf(cfg, secrets.without(*STORE_KEYS)),
        "spark.master": cfg.spark.master or "local[2]",
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
    }


def server_command(properties_file: Path) -> list[str]:
    """`spark-submit` of the server, its settings read from `properties_file`."""
    submit = shutil.which("spark-submit", path=str(Path(sys.executable).parent)) or shutil.which(
        "spark-submit"
    )
    if submit is None:
        raise SparkSetupError("spark-submit not found (pip install pyspark)")
    return [
        submit,
        *("--class", SERVER_CLASS, "--name", "clickstream Spark Connect server"),
        *("--properties-file", str(properties_file)),
    ]


def server_env(secrets: Secrets) -> dict[str, str]:
    return {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        **{var: secrets[k].get_secret_value() for k, var in STORE_KEYS.items() if k in secrets},
    }


def start_server(cfg: Config, secrets: Secrets, port: int, **popen: Any) -> subprocess.Popen:
    """A server on 127.0.0.1:`port`, listening; its settings file is gone once it listens."""
    with private_properties_file(server_conf(cfg, secrets, port)) as properties:
        server = subprocess.Popen(server_command(properties), env=server_env(secrets), **popen)
        try:
            wait_until_listening(port, server)
        except BaseException:
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=60)
            raise
    return server


def wait_until_listening(port: int, server: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SparkSetupError(f"the Spark Connect server exited with {server.returncode}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise SparkSetupError(f"the Spark Connect server is not listening on {port} after {timeout_s}s")


def parser() -> argparse.ArgumentParser:
    p = job_parser("spark-connect", "Run a local Spark Connect server with the project's jars.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"gRPC port ({DEFAULT_PORT})")
    return p


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    secrets = resolve_secrets(cfg.secrets, optional=OPTIONAL_SECRETS)
    try:
        server = start_server(cfg, secrets, args.port)
    except KeyboardInterrupt:
        return 0
    try:
        print(f"Spark Connect server on sc://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=60)


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
