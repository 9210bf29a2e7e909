"""Dashboard viewers: many browsers refreshing `clickstream-dashboard` on the database of
`benchmarks.dashboard`, served each way in turn: Flask's development server (the baseline),
waitress, gunicorn without and with its render cache (docs/decisions/dashboard-server.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from benchmarks.common import Watch, cpu_s, start_job, tree_cpu_s
from benchmarks.dashboard import prepare_database
from benchmarks.harness import Cells, Scenario, Target, cells, ms, percentile, say
from clickstream_pipeline.dashboard.server import Serving
from clickstream_pipeline.warehouse.database import ConnectionParams, fetch
from devkit.ports import free_port
from devkit.processes import kill_group
from devkit.stack import secrets_for
from devkit.waits import wait_until

CONNECTIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'clickstream-dashboard'"
)
BUSIEST = """SELECT customer_id FROM rollup_events_1hr
             GROUP BY customer_id ORDER BY sum(event_count) DESC LIMIT 20"""
CONTENDERS = {  # what the dashboard was: Flask's server, a connection per refresh, no cache
    "development": Serving(server="development", pool_size=64, cache_seconds=0),
    "waitress": Serving(server="waitress"),
    "gunicorn, no cache": Serving(server="gunicorn", cache_seconds=0),
    "gunicorn": Serving(server="gunicorn"),
}
ROW = (
    "dashboard, {viewers} viewers refreshing every {interval_s:g} s: {name} | p99 {p99_ms:ms},"
    " {refreshes_per_s:.0f} refreshes/s, {errors} errors, at most {most_db_connections}"
    " connections | development server p99 {baseline:ms} | {ratio:.2f}x p99"
    " | {targets:p99_le_250ms:{name}; no_errors:{name}{bounded}}"
)


@dataclass
class Tally:
    warm_until: float  # refreshes started before: the warm-up (every view read once)
    latencies_ms: list[float] = field(default_factory=list)  # after the warm-up
    warm_up_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # by kind
    rng: random.Random = field(default_factory=lambda: random.Random(7))  # when each starts


def refresh_request(dependencies: list[dict], customer: str, tick: int) -> dict[str, Any]:
    """The body a browser posts to /_dash-update-component when the page's interval fires."""
    (callback,) = [d for d in dependencies if any(i["id"] == "refresh" for i in d["inputs"])]
    parts = [part.split(".") for part in callback["output"].strip(".").split("...")]
    values = {"refresh": tick, "customer": customer, "range": None}
    return {
        "output": callback["output"],
        "outputs": [{"id": name, "property": prop} for name, prop in parts],
        "inputs": [
            {"id": i["id"], "property": i["property"], "value": values.get(i["id"])}
            for i in callback["inputs"]
        ],
        "changedPropIds": ["refresh.n_intervals"],
        "state": [],
    }


async def viewer(
    session: aiohttp.ClientSession,
    url: str,
    body: Callable[[int], dict],
    interval_s: float,
    until: float,
    tally: Tally,
) -> None:
    """One viewer: the page, then a refresh every `interval_s` (a late one is not made up)."""
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with session.get(url, timeout=timeout) as page:
            await page.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        tally.errors[f"page: {type(exc).__name__}"] += 1
        return
    await asyncio.sleep(tally.rng.uniform(0, interval_s))
    tick, refresh = 0, f"{url}_dash-update-component"
    while time.monotonic() < until:
        tick, started = tick + 1, time.monotonic()
        try:
            async with session.post(refresh, json=body(tick), timeout=timeout) as answer:
                text = await answer.text()
                elapsed = (time.monotonic() - started) * 1000
                if answer.status != 200:
                    tally.errors[f"HTTP {answer.status}"] += 1
                elif "database unavailable" in text:
                    tally.errors["database unavailable"] += 1
                else:
                    warm = started < tally.warm_until
                    (tally.warm_up_ms if warm else tally.latencies_ms).append(elapsed)
        except (TimeoutError, aiohttp.ClientError) as exc:
            tally.errors[type(exc).__name__] += 1
        await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))


async def watch(url: str, args: argparse.Namespace, customers: list[str]) -> Tally:
    """Half the viewers watch all customers, the others one of the busiest; default range."""
    tally = Tally(warm_until=time.monotonic() + args.warm_up_s)
    rng = tally.rng
    connector = aiohttp.TCPConnector(limit=0)  # one keep-alive connection per viewer, as browsers
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url + "_dash-dependencies") as answer:
            dependencies = await answer.json()
        until = time.monotonic() + args.seconds
        watched = ["all" if i % 2 == 0 else rng.choice(customers) for i in range(args.viewers)]
        bodies = [partial(refresh_request, dependencies, who) for who in watched]
        await asyncio.gather(
            *(viewer(session, url, b, args.interval_s, until, tally) for b in bodies)
        )
    return tally


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def measure(
    name: str, serving: Serving, db: ConnectionParams, args: argparse.Namespace, busiest: list[str]
) -> dict[str, Any]:
    """The dashboard job served `serving`'s way while the viewers watch."""
    port, log = free_port(), Path(tempfile.mkstemp(prefix="bench-viewers-", suffix=".log")[1])
    flags = (
        f"--port={port} --server={serving.server} --pool-size={serving.pool_size}"
        f" --cache-seconds={serving.cache_seconds}"
    ).split()
    server = start_job("dashboard", args.cfg, secrets_for(args.secrets, db), log, *flags)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until(lambda: answers(url), 90, name, every_s=0.3, process=server, log=log)
        with Watch(db, CONNECTIONS, interval_s=0.25) as connections:
            cpu0, own0, t0 = tree_cpu_s(server.pid), cpu_s(psutil.Process()), time.monotonic()
            tally = asyncio.run(watch(url, args, busiest))
            wall = time.monotonic() - t0
            cpu, own_s = tree_cpu_s(server.pid) - cpu0, cpu_s(psutil.Process()) - own0
        most = max((count for _, count in connections.changes), default=0)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            kill_group(server, missing_ok=True)
    times, warm = tally.latencies_ms, tally.warm_up_ms
    p99 = percentile(times, 99) if times else None
    figures = {
        "serving": {
            "server": serving.server,
            "threads": serving.threads,
            "workers": serving.workers if serving.server == "gunicorn" else 1,
            "pool_size": serving.pool_size,
            "cache_seconds": serving.cache_seconds,
        },
        "refreshes": len(times),
        "refreshes_per_s": (len(times) + len(warm)) / wall,
        "p50_ms": percentile(times, 50) if times else None,
        "p99_ms": p99,
        "max_ms": max(times) if times else None,
        "warm_up_refreshes": len(warm),
        "warm_up_p99_ms": percentile(warm, 99) if warm else None,
        "errors": sum(tally.errors.values()),
        "errors_by_kind": tally.errors,
        "most_db_connections": most,
        "server_cpu_cores": cpu / wall,
        "load_generator_cpu_cores": own_s / wall,  # this process shares the 2 cores
    }
    say(
        f"{name}: {figures['refreshes_per_s']:.0f} refreshes/s, p99 {ms(p99)}, "
        f"{figures['errors']} errors {tally.errors or ''}, at most {most} connections"
    )
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    db = prepare_database(args)
    customers = [str(c) for (c,) in fetch(db, BUSIEST)]
    say(f"{args.viewers} viewers, a refresh every {args.interval_s:g} s each, {args.seconds:g} s")
    servers = {name: measure(name, s, db, args, customers) for name, s in CONTENDERS.items()}
    baseline = servers["development"]["p99_ms"]
    for figures in servers.values():
        p99 = figures["p99_ms"]
        figures["p99_over_development"] = p99 / baseline if baseline and p99 else None
    sizes = {k: getattr(args, k) for k in ("events", "viewers", "interval_s", "seconds")}
    return sizes | {"servers": servers}


def targets(f: dict[str, Any]) -> list[Target]:
    found = []
    for name, s in f["servers"].items():
        found.append(Target(f"p99_le_250ms:{name}", s["p99_ms"], "<=", 250.0, "p99 <= 250 ms"))
        found.append(Target(f"no_errors:{name}", s["errors"], "<=", 0, "no errors"))
    chosen = f["servers"]["gunicorn"]
    bound = chosen["serving"]["workers"] * chosen["serving"]["pool_size"]
    label = f"gunicorn's connections <= {bound}"
    return [
        *found,
        Target("connections_bounded", chosen["most_db_connections"], "<=", bound, label),
    ]


def rows(f: dict[str, Any]) -> list[Cells]:
    shared = {k: f[k] for k in ("viewers", "interval_s", "targets")}
    shared["baseline"] = f["servers"]["development"]["p99_ms"]
    found = []
    for name, s in f["servers"].items():
        bounded = "; connections_bounded" if name == "gunicorn" else ""
        ratio = s["p99_over_development"] or 0
        found.append(cells(s | shared | {"name": name, "ratio": ratio, "bounded": bounded}, ROW))
    return found


SCENARIO = Scenario(
    "viewers",
    __doc__ or "",
    run,
    # --seconds: per server; --warm-up-s: the first seconds, counted apart
    flags={
        "events": 10_000_000,
        "viewers": 200,
        "interval_s": 2.0,
        "seconds": 30.0,
        "warm_up_s": 5.0,
    },
    quick={"events": 50_000, "viewers": 40, "seconds": 2.0, "warm_up_s": 0.5},
    targets=targets,
    rows=rows,
    headline="dashboard, {viewers} viewers refreshing every {interval_s:g} s, {events:M} events"
    " | p99 {servers[gunicorn][p99_ms]:ms}, {servers[gunicorn][errors]} errors,"
    " {servers[gunicorn][most_db_connections]} connections"
    " | Flask's development server p99 {servers[development][p99_ms]:ms} |",
)

if __name__ == "__main__":
    SCENARIO.main()
    os._exit(0)  # nothing left to wait for
