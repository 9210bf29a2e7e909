"""A Python task's fixed cost: one-row Spark jobs through a Python worker, for each worker daemon
of a local session, each in a process of its own and interleaved.

Designs: Spark's own daemon (`spark.python_daemon = false`: pyspark imported from Spark's
archives, task data waiting on delayed ACKs) and the project's (`core/python_daemon.py`, the
default). Figures: medians over the jobs of a one-row `mapInArrow` job (the shape of the sink's
pass) and a one-row RDD `map` job, against the same session's JVM-only one-row `collect`, and
each job's speed against Spark's daemon. Needs no service.

Run: `.venv/bin/python -m benchmarks.studies.python_tasks [--jobs 40] [--repeat 2] [--quick]`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from benchmarks.common import benchmark_parser, finish
from benchmarks.harness import (
    STUDY_RESULTS,
    machine_facts,
    say,
    setup_env,
)
from benchmarks.studies import child_figures, report_figures

DESIGNS = {"Spark's daemon": False, "installed pyspark": True}
BASELINE = "Spark's daemon"
JOBS = ("jvm_only_ms", "map_in_arrow_ms", "rdd_map_ms")


def passed_through(batches: Iterable[Any]) -> Iterator[Any]:
    yield from batches


def child(args: argparse.Namespace) -> None:
    """Time the jobs in this fresh process; prints its figures as one JSON line."""
    from clickstream_pipeline.core.spark import build_spark

    cfg, secrets = setup_env(args.env)
    cfg = cfg.model_copy(
        update={"spark": cfg.spark.model_copy(update={"python_daemon": DESIGNS[args.child]})}
    )
    spark = build_spark(cfg, secrets)
    one_row = spark.range(0, 1, 1, 1).selectExpr("id", "cast(id AS string) AS s").cache()
    one_row.count()
    jobs: dict[str, Callable[[], Any]] = {
        "jvm_only_ms": one_row.collect,
        "map_in_arrow_ms": lambda: one_row.mapInArrow(passed_through, one_row.schema).collect(),
        "rdd_map_ms": lambda: one_row.rdd.map(tuple).collect(),
    }
    figures: dict[str, Any] = {}
    for name, job in jobs.items():
        for _ in range(3):  # warm-up: the worker's imports, the JIT
            job()
        times = []
        for _ in range(args.jobs):
            started = time.perf_counter()
            job()
            times.append((time.perf_counter() - started) * 1000)
        figures[name] = round(statistics.median(times), 1)
    figures["daemon"] = spark.conf.get("spark.python.daemon.module", "pyspark.daemon")
    spark.stop()
    report_figures(figures)


def run_child(design: str, args: argparse.Namespace) -> dict[str, Any]:
    command = ["--child", design, "--jobs", str(args.jobs), "--env", args.env]
    return child_figures("studies.python_tasks", design, command)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = benchmark_parser(__doc__, "one repeat of 10 jobs each")
    parser.add_argument("--jobs", type=int, default=40, help="timed jobs of each kind")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", choices=list(DESIGNS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return None
    if args.quick:
        args.repeat, args.jobs = 1, 10
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in DESIGNS}
    for i in range(args.repeat):
        for name in DESIGNS:
            figures = run_child(name, args)
            runs[name].append(figures)
            times = ", ".join(f"{k} {figures[k]}" for k in JOBS)
            say(f"run {i + 1}/{args.repeat} {name}: {times}")
    medians = {
        name: {k: round(statistics.median(r[k] for r in rs), 1) for k in JOBS}
        for name, rs in runs.items()
    }
    base = medians[BASELINE]
    print(f"\none-row jobs, medians of {args.jobs} jobs x {args.repeat} processes (ms):")
    print(f"  {'daemon':20} {'JVM only':>9} {'mapInArrow':>11} {'RDD map':>9} {'speed':>6}")
    for name, m in medians.items():
        m["python_task_ms"] = round(m["map_in_arrow_ms"] - m["jvm_only_ms"], 1)
        m["map_in_arrow_speed"] = round(base["map_in_arrow_ms"] / m["map_in_arrow_ms"], 2)
        print(
            f"  {name:20} {m['jvm_only_ms']:9.1f} {m['map_in_arrow_ms']:11.1f} "
            f"{m['rdd_map_ms']:9.1f} {m['map_in_arrow_speed']:5.2f}x"
        )
    results = {
        "machine": machine_facts(),
        "jobs": args.jobs,
        "repeat": args.repeat,
        "medians": medians,
        "runs": runs,
    }
    return finish("python_tasks", args, results, STUDY_RESULTS)


if __name__ == "__main__":
    main()
