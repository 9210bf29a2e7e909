"""The local object store: S3Proxy on a folder (the stack's) against moto's in-memory server
(the store before it), each started on a port of its own in the same run.

Figures per store: seconds from launch to the first answered request (median of the starts),
a checkpoint-log write as Spark's S3A does it (PUT a temporary object, COPY it to its name,
DELETE the temporary, HEAD and LIST; median ms), a small Delta append through Spark's S3A
(a dead-letter batch of 100 rows; median s after a warm-up), and whether an object outlives a
restart of the server. Ratios: S3Proxy over moto.

Run: `.venv/bin/python -m benchmarks.objectstore [--starts 3] [--cycles 200] [--appends 5]
[--quick]`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from benchmarks.common import ROOT, machine_facts, say, setup_env, write_result
from devkit.ports import free_port

STACK = ROOT / "scripts" / "stack" / "objectstore.sh"
MOTO = ROOT / ".venv" / "bin" / "moto_server"
BUCKET = "bench"


@dataclass
class Store:
    """One S3 server the benchmark starts and stops, on a port and in a folder of its own."""

    name: str
    port: int
    home: Path
    access_key: str
    secret_key: str
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def start(self) -> float:
        """Launch; seconds until a request is answered."""
        began = time.perf_counter()
        if self.name == "moto":
            self.proc = subprocess.Popen(
                [str(MOTO), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        else:
            subprocess.run(
                [str(STACK), "start"], env=self._stack_env(), check=True, stdout=subprocess.DEVNULL
            )
        while True:
            try:
                buckets = {b["Name"] for b in self.client().list_buckets()["Buckets"]}
                break
            except Exception:
                if time.perf_counter() - began > 120:
                    raise
                time.sleep(0.02)
        elapsed = time.perf_counter() - began
        if BUCKET not in buckets:
            self.client().create_bucket(Bucket=BUCKET)
        return elapsed

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None
        elif self.name == "s3proxy":
            subprocess.run(
                [str(STACK), "stop"], env=self._stack_env(), check=True, stdout=subprocess.DEVNULL
            )

    def _stack_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "S3_PORT": str(self.port),
            "S3_BUCKETS": BUCKET,
            "OBJECTSTORE_HOME": str(self.home),
            "OBJECTSTORE_PID": str(self.home / "server.pid"),
        }


def checkpoint_cycle(s3: Any, i: int) -> None:
    """What S3A does for one entry of Spark's offset log."""
    final, temp = f"ckpt/offsets/{i}", f"ckpt/offsets/.{i}.{uuid.uuid4().hex}.tmp"
    s3.put_object(Bucket=BUCKET, Key=temp, Body=b'{"batchWatermarkMs":0}\n' * 8)
    s3.copy_object(Bucket=BUCKET, Key=final, CopySource={"Bucket": BUCKET, "Key": temp})
    s3.delete_object(Bucket=BUCKET, Key=temp)
    s3.head_object(Bucket=BUCKET, Key=final)
    s3.list_objects_v2(Bucket=BUCKET, Prefix="ckpt/offsets/", MaxKeys=1000)


def checkpoint_cycles_ms(s3: Any, n: int) -> float:
    """Median milliseconds of n checkpoint-log entries."""
    times = []
    for i in range(n):
        began = time.perf_counter()
        checkpoint_cycle(s3, i)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def survives_restart(store: Store) -> bool:
    key = f"persist/{uuid.uuid4().hex}"
    store.client().put_object(Bucket=BUCKET, Key=key, Body=b"kept")
    store.stop()
    store.start()
    try:
        return bool(store.client().get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"kept")
    except Exception:
        return False


@contextmanager
def spark_for(stores: list[Store]) -> Iterator[Any]:
    """One local session; each store's bucket reached through S3A per-bucket settings."""
    from clickstream_pipeline.core.spark import build_spark

    cfg, secrets = setup_env("local")
    per_bucket: dict[str, str] = {}
    for store in stores:
        prefix = f"spark.hadoop.fs.s3a.bucket.{bucket_of(store)}"
        per_bucket |= {
            f"{prefix}.endpoint": store.endpoint,
            f"{prefix}.access.key": store.access_key,
            f"{prefix}.secret.key": store.secret_key,
        }
    spark_cfg = cfg.spark.model_copy(update={"conf": {**cfg.spark.conf, **per_bucket}})
    spark = build_spark(cfg.model_copy(update={"spark": spark_cfg}), secrets)
    try:
        yield spark
    finally:
        spark.stop()


def bucket_of(store: Store) -> str:
    return f"{BUCKET}-{store.name}"


def delta_appends(spark: Any, store: Store, n: int) -> float:
    """Median seconds of a 100-row dead-letter append (after one warm-up) on the store."""
    from clickstream_pipeline.core.schema import DEAD_LETTER_SCHEMA
    from clickstream_pipeline.ingest import dead_letters

    store.client().create_bucket(Bucket=bucket_of(store))
    path = f"s3a://{bucket_of(store)}/dead_letters"
    dead_letters.ensure_table(spark, path)
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = [
        (b"k", b"{broken json", "bench", 0, i, now, 0, "bench", "invalid_json", now, None)
        for i in range(100)
    ]
    frame = spark.createDataFrame(rows, DEAD_LETTER_SCHEMA).drop("replayed_at").cache()
    frame.count()
    times = []
    for batch in range(n + 1):
        began = time.perf_counter()
        dead_letters.append(path, frame, "bench", batch)
        if batch:
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--starts", type=int, default=3)
    p.add_argument("--cycles", type=int, default=200)
    p.add_argument("--appends", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="1 start, 20 cycles, 2 appends")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.quick:
        args.starts, args.cycles, args.appends = 1, 20, 2
    _, secrets = setup_env("local")
    access, secret = (secrets[k].get_secret_value() for k in ("s3_access_key", "s3_secret_key"))
    scratch = Path(tempfile.mkdtemp(prefix="bench-objectstore-", dir=ROOT / ".stack"))
    stores = [
        Store(name, free_port(), scratch / name, access, secret) for name in ("moto", "s3proxy")
    ]
    figures: dict[str, dict[str, Any]] = {s.name: {} for s in stores}
    try:
        for store in stores:
            starts = []
            for _ in range(args.starts):
                starts.append(store.start())
                store.stop()
            figures[store.name]["start_s"] = statistics.median(starts)
            say(f"{store.name}: started in {figures[store.name]['start_s']:.2f} s (median)")
        for store in stores:
            store.start()
        cycles: dict[str, list[float]] = {s.name: [] for s in stores}
        for store in [*stores, *reversed(stores)]:  # interleaved halves: noise hits both
            cycles[store.name].append(checkpoint_cycles_ms(store.client(), args.cycles // 2))
        for store in stores:
            figures[store.name]["checkpoint_cycle_ms"] = statistics.mean(cycles[store.name])
        with spark_for(stores) as spark:
            for store in stores:
                figures[store.name]["delta_append_s"] = delta_appends(spark, store, args.appends)
        for store in stores:
            figures[store.name]["keeps_data_across_restart"] = survives_restart(store)
    finally:
        for store in stores:
            store.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    moto, s3proxy = figures["moto"], figures["s3proxy"]
    ratios = {
        "s3proxy_over_moto_start": s3proxy["start_s"] / moto["start_s"],
        "s3proxy_over_moto_checkpoint_cycle": s3proxy["checkpoint_cycle_ms"]
        / moto["checkpoint_cycle_ms"],
        "s3proxy_over_moto_delta_append": s3proxy["delta_append_s"] / moto["delta_append_s"],
    }
    print(f"{'store':<10}{'start s':>10}{'ckpt cycle ms':>15}{'delta append s':>16}  restart")
    for name, f in figures.items():
        kept = "keeps data" if f["keeps_data_across_restart"] else "loses data"
        print(
            f"{name:<10}{f['start_s']:>10.2f}{f['checkpoint_cycle_ms']:>15.1f}"
            f"{f['delta_append_s']:>16.2f}  {kept}"
        )
    print(
        "ratios (S3Proxy / moto, lower is faster): "
        + ", ".join(f"{k.removeprefix('s3proxy_over_moto_')} {v:.2f}x" for k, v in ratios.items())
    )
    write_result(
        "objectstore",
        {
            "machine": machine_facts(),
            "args": vars(args) | {"out": None},
            "stores": figures,
            "ratios": ratios,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
