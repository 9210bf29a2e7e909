"""Job start: a fresh local session, the ingest query's start and its first and last batch
commits (N messages, available-now), for each way of starting the JVM: `spark.jars`, the jars
on the class path, and with the class archive (the default) (docs/decisions/class-archive.md)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
import uuid
from typing import Any

from benchmarks.common import delete_checkpoint, ingest_config, load_topic
from benchmarks.harness import ROOT, Scenario, db_params, say, scratch_db, setup_env
from benchmarks.studies import interleaved, main
from devkit.stack import fresh_topic, secrets_for

DESIGNS = {  # (class archive, spark.jars); the first is the baseline
    "spark.jars": (False, True),
    "class path": (False, False),
    "class path + archive": (True, False),
}
PHASES = ("session_s", "query_start_s", "first_commit_s", "last_commit_s")
READ = "SELECT coalesce(sum(rows_read), 0) FROM clickstream_ingest_batches WHERE query_name = %s"


def child(design: str, topic: str, dbname: str, per_batch: str, env: str) -> dict[str, Any]:
    """One job start in this fresh process: seconds to each phase."""
    from clickstream_pipeline.core import spark as spark_module
    from clickstream_pipeline.ingest.stream import start_ingest
    from clickstream_pipeline.warehouse.database import fetch

    started = time.perf_counter()
    archive, spark_jars = DESIGNS[design]
    cfg, secrets = setup_env(env)
    db = dataclasses.replace(db_params(secrets), dbname=dbname)
    secrets = secrets_for(secrets, db)
    name = f"bench-startup-{uuid.uuid4().hex[:8]}"
    cfg = ingest_config(
        cfg, topic, name, trigger="available_now", max_offsets_per_trigger=int(per_batch)
    )
    cfg = cfg.model_copy(update={"spark": cfg.spark.model_copy(update={"class_archive": archive})})
    if spark_jars:  # the earlier design: the jars given as spark.jars
        session_conf = spark_module.session_conf

        def with_spark_jars(cfg: Any, secrets: Any) -> dict[str, str]:
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
    figures["rows"] = int(fetch(db, READ, (cfg.ingest.query_name,))[0][0])
    figures["java_options"] = spark.conf.get("spark.driver.extraJavaOptions", "") or ""
    delete_checkpoint(spark, cfg.checkpoint_location)
    spark.stop()
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    say("class archive: training it if missing (not timed)")
    subprocess.run(  # a process of its own: its JVM writes the archive as it exits
        [sys.executable, "-m", "clickstream_pipeline.ingest.warm_up", "--env", args.env],
        cwd=ROOT,
        check=True,
    )
    with (
        fresh_topic(args.kafka, "bench-startup") as topic,
        scratch_db(args.secrets, "bench_startup") as db,
    ):
        load_topic(args.kafka, topic, args.messages)
        child_args = (topic, db.dbname, args.per_batch, args.env)
        found = interleaved("startup", list(DESIGNS), args.repeat, *child_args)
    for name, runs in found["runs"].items():
        if any(r["rows"] != args.messages for r in runs):
            raise RuntimeError(f"{name}: read {[r['rows'] for r in runs]} of {args.messages}")
    base = next(iter(found["medians"].values()))["last_commit_s"]
    for m in found["medians"].values():
        m["speed_over_spark_jars"] = round(base / m["last_commit_s"], 3)
    return {"messages": args.messages, "per_batch": args.per_batch, **found}


SCENARIO = Scenario(
    "startup",
    __doc__ or "",
    run,
    flags={"messages": 200_000, "per_batch": 100_000, "repeat": 3},
    quick={"messages": 20_000, "per_batch": 10_000, "repeat": 1},
    rows=lambda f: [
        [name, *(f"{m[k]:.2f}" for k in PHASES), f"{m['speed_over_spark_jars']:.2f}x"]
        for name, m in f["medians"].items()
    ],
    columns=("design", "session s", "query start s", "1st commit s", "last commit s", "speed"),
    study=True,
)

if __name__ == "__main__":
    main(SCENARIO, child)
