"""A Python task's fixed cost: one-row Spark jobs through a Python worker, for each worker
daemon of a local session (Spark's own, `spark.python_daemon = false`, and the project's,
`core/python_daemon.py`), against the session's JVM-only job (docs/decisions/worker-daemon.md)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from benchmarks.harness import Scenario, setup_env
from benchmarks.studies import interleaved, main

DESIGNS = {"Spark's daemon": False, "installed pyspark": True}  # the first is the baseline
KINDS = ("jvm_only_ms", "map_in_arrow_ms", "rdd_map_ms")


def passed_through(batches: Iterable[Any]) -> Iterator[Any]:
    yield from batches


def child(design: str, jobs: str, env: str) -> dict[str, Any]:
    """Median ms of each one-row job in this fresh process."""
    from clickstream_pipeline.core.spark import build_spark

    cfg, secrets = setup_env(env)
    spark_cfg = cfg.spark.model_copy(update={"python_daemon": DESIGNS[design]})
    spark = build_spark(cfg.model_copy(update={"spark": spark_cfg}), secrets)
    one_row = spark.range(0, 1, 1, 1).selectExpr("id", "cast(id AS string) AS s").cache()
    one_row.count()
    kinds: dict[str, Callable[[], Any]] = {
        "jvm_only_ms": one_row.collect,
        "map_in_arrow_ms": lambda: one_row.mapInArrow(passed_through, one_row.schema).collect(),
        "rdd_map_ms": lambda: one_row.rdd.map(tuple).collect(),
    }
    figures: dict[str, Any] = {}
    for name, job in kinds.items():
        for _ in range(3):  # warm-up: the worker's imports, the JIT
            job()
        times = []
        for _ in range(int(jobs)):
            started = time.perf_counter()
            job()
            times.append((time.perf_counter() - started) * 1000)
        figures[name] = round(statistics.median(times), 1)
    figures["daemon"] = spark.conf.get("spark.python.daemon.module", "pyspark.daemon")
    spark.stop()
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    found = interleaved("python_tasks", list(DESIGNS), args.repeat, args.jobs, args.env)
    base = next(iter(found["medians"].values()))
    for m in found["medians"].values():
        m["python_task_ms"] = round(m["map_in_arrow_ms"] - m["jvm_only_ms"], 1)
        m["map_in_arrow_speed"] = round(base["map_in_arrow_ms"] / m["map_in_arrow_ms"], 2)
    return {"jobs": args.jobs, **found}


SCENARIO = Scenario(
    "python_tasks",
    __doc__ or "",
    run,
    flags={"jobs": 40, "repeat": 2},  # timed jobs of each kind; processes of each design
    quick={"jobs": 10, "repeat": 1},
    rows=lambda f: [
        [name, *(f"{m[k]:.1f}" for k in KINDS), f"{m['map_in_arrow_speed']:.2f}x"]
        for name, m in f["medians"].items()
    ],
    columns=("daemon", "JVM only ms", "mapInArrow ms", "RDD map ms", "mapInArrow speed"),
    study=True,
)

if __name__ == "__main__":
    main(SCENARIO, child)
