"""PySpark's worker daemon, importing pyspark from its installed package (local sessions).

Spark puts its own archives at the head of every Python worker's path: `pyspark.zip`, py4j's
zip and the spark-core jar. PySpark's worker calls `importlib.invalidate_caches()` before each
task, and on Python 3.10 to 3.12 a zip importer then re-reads its whole archive's directory
(CPython gh-103200, lazy from 3.13): about 75 ms a task here, whatever its size, most of
it in the spark-core jar's 10,000 entries. Where pyspark and py4j are installed as packages
(pip), this daemon drops those archives from the path and runs PySpark's own daemon, so the
workers it forks import the same release from site-packages. Anything else on the path (a
user's `--py-files` zip included) stays. `spark.python.daemon.module` names it
(`core.spark.session_conf`, local masters only).
"""

from __future__ import annotations

import os
import socket
import sys
from importlib.machinery import PathFinder

SPARK_ARCHIVES = ("pyspark.zip", "py4j-")


def is_spark_archive(path: str) -> bool:
    name = os.path.basename(path)
    spark_core = name.startswith("spark-core_") and name.endswith(".jar")
    return spark_core or (name.startswith(SPARK_ARCHIVES) and name.endswith(".zip"))


def path_without_spark_archives(path: list[str]) -> list[str]:
    """`path` less Spark's archives, when pyspark and py4j can be imported without them."""
    kept = [p for p in path if not is_spark_archive(p)]
    for package in ("pyspark", "py4j"):
        spec = PathFinder.find_spec(package, kept)
        if spec is None or spec.origin is None or not os.path.isfile(spec.origin):
            return path
    return kept


def quick_acks(sock: socket.socket) -> None:
    if hasattr(socket, "TCP_QUICKACK"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def main() -> None:
    kept = path_without_spark_archives(sys.path)
    dropped = [p for p in sys.path if p not in kept]
    sys.path[:] = kept
    for entry in list(sys.path_importer_cache):
        if any(entry == p or entry.startswith(p + os.sep) for p in dropped):
            del sys.path_importer_cache[entry]
    import pyspark.daemon as daemon

    task = daemon.worker

    def worker(sock: socket.socket, authenticated: bool) -> int:
        quick_acks(sock)
        return task(sock, authenticated)

    daemon.worker = worker
    daemon.manager()


if __name__ == "__main__":
    main()
