"""Job start: a fresh local session, the ingest query's start and its first batches, for each
way of starting the JVM, each in a process of its own and interleaved.

Designs: `spark.jars` (the jars copied for the executor, as before), the jars on the JVM's class
path, and the class path with the class archive (`class_archive.py`, the default). Figures:
seconds from process start to a session, to the query's start, to the first batch's commit and
to the last one (N messages available-now), medians over the repeats, and each design's speed
(time to the last commit) against `spark.jars`.

Run: `.venv/bin/python -m benchmarks.studies.startup [--messages 200000] [--repeat 3] [--quick]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from benchmarks.common import benchmark_parser, finish
from benchmarks.end_to_end import delete_checkpoint, ingest_config, load_topic
from benchmarks.harness import (
    ROOT,
    STUDY_RESULTS,
    db_params,
    machine_facts,
    say,
    scratch_database,
    setup_env,
)
from benchmarks.studies import child_figures, report_figures
from clickstream_pipeline.core.config import Config
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.stack import fresh_topic, secrets_for

DESIGNS = {
    "spark.jars": {"class_archive": False, "spark_jars": True},
    "class path": {"class_archive": False, "spark_jars": False},
    "class path + archive": {"class_archive": True, "spark_jars": False},
}
BASELINE = "spark.jars"
PHASES = ("session_s", "query_start_s", "first_commit_s", "last_commit_s")


def child_config(cfg: Config, topic: str, design: dict[str, bool], per_batch: int) -> Config:
    cfg = ingest_config(
        cfg,
        topic,
        f"bench-startup-{uuid.uuid4().hex[:8]}",
        trigger="available_now",
        max_offsets_per_trigger=per_batch,
    )
    return cfg.model_copy(
        update={"spark": cfg.spark.model_copy(update={"class_archive": design["class_archive"]})}
    )


def child(args: argparse.Namespace) -> None:
    """One job start in this fresh process; prints its figures as one JSON line."""
    from clickstream_pipeline.core import spark as spark_module
    from clickstream_pipeline.ingest.stream import start_ingest
    from clickstream_pipeline.warehouse.database import fetch

    started = time.perf_counter()
    design = DESIGNS[args.child]
    base_cfg, base_secrets = setup_env(args.env)
    db = dataclasses.replace(db_params(base_secrets), dbname=args.db)
    secrets = secrets_for(base_secrets, db)
    cfg = child_config(base_cfg, args.topic, design, args.per_batch)
    if design["spark_jars"]:  # the earlier design: jars given as spark.jars
        session_conf = spark_module.session_conf

        def with_spark_jars(cfg: Config, secrets: Any) -> dict[str, str]:
            conf = session_conf(cfg, secrets)
            jars = conf.pop("spark.driver.extraClassPath").split(os.pathsep)
            return {**conf, "spark.jars": ",".join(jars)}

        spark_module.session_conf = with_spark_jars
    spark = spark_module.build_spark(cfg, secrets)
    figures: dict[str, Any] = {"session_s": time.perf_counter() - started}
    query = start_ingest(spark, cfg, secrets)
    figures["query_start_s"] = time.perf_counter() - started
    while not query.recentProgress:
        time.sleep(0.02)
    figures["first_commit_s"] = time.perf_counter() - started
    query.awaitTermination()
    figures["last_commit_s"] = time.perf_counter() - started
    done = fetch(
        db,
        "SELECT coalesce(sum(rows_read), 0) FROM clickstream_ingest_batches WHERE query_name = %s",
        (cfg.ingest.query_name,),
    )[0][0]
    figures["rows"] = int(done)
    figures["java_options"] = spark.conf.get("spark.driver.extraJavaOptions", "") or ""
    delete_checkpoint(spark, cfg.checkpoint_location)
    spark.stop()
    report_figures(figures)


def run_child(design: str, topic: str, db: ConnectionParams, args: argparse.Namespace) -> dict:
    return child_figures(
        "studies.startup",
        design,
        ["--child", design, "--topic", topic, "--db", db.dbname,
         "--per-batch", str(args.per_batch), "--env", args.env],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = benchmark_parser(__doc__, "one repeat of 20,000 messages")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--per-batch", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=list(DESIGNS), help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return None
    if args.quick:
        args.repeat, args.messages, args.per_batch = 1, 20_000, 10_000
    say("class archive: training it if missing (not timed)")
    subprocess.run(  # a process of its own: its JVM writes the archive as it exits
        [sys.executable, "-m", "clickstream_pipeline.ingest.warm_up", "--env", args.env],
        cwd=ROOT,
        check=True,
    )
    base_cfg, base_secrets = setup_env(args.env)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in DESIGNS}
    with (
        fresh_topic(producer_config(base_cfg.kafka, base_secrets), "bench-startup") as topic,
        scratch_database(db_params(base_secrets), "bench_startup") as db,
    ):
        load_topic(base_cfg, base_secrets, topic, args.messages)
        for i in range(args.repeat):
            for name in DESIGNS:
                figures = run_child(name, topic, db, args)
                if figures["rows"] != args.messages:
                    raise RuntimeError(f"{name}: read {figures['rows']} of {args.messages}")
                runs[name].append(figures)
                say(
                    f"run {i + 1}/{args.repeat} {name}: "
                    + ", ".join(f"{k} {figures[k]:.2f}" for k in PHASES)
                )
    medians = {
        name: {k: round(statistics.median(r[k] for r in rs), 3) for k in PHASES}
        for name, rs in runs.items()
    }
    base = medians[BASELINE]["last_commit_s"]
    print(f"\njob start, {args.messages:,} messages, medians of {args.repeat}:")
    print(
        f"  {'design':24} {'session':>8} {'query':>8} {'1st commit':>11} {'last':>8} {'speed':>6}"
    )
    for name, m in medians.items():
        m["speed_over_spark_jars"] = round(base / m["last_commit_s"], 3)
        print(
            f"  {name:24} {m['session_s']:8.2f} {m['query_start_s']:8.2f} "
            f"{m['first_commit_s']:11.2f} {m['last_commit_s']:8.2f} "
            f"{m['speed_over_spark_jars']:5.2f}x"
        )
    results = {
        "machine": machine_facts(),
        "messages": args.messages,
        "per_batch": args.per_batch,
        "repeat": args.repeat,
        "medians": medians,
        "runs": runs,
    }
    return finish("startup", args, results, STUDY_RESULTS)


if __name__ == "__main__":
    main()
