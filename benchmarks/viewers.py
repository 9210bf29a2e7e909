"""Dashboard viewers: N concurrent viewers (default 200) of the live dashboard, each loading the
page and then refreshing its panels every `--interval-s` (default 2 s, five times the page's
own default rate), against the 10M-event database of `benchmarks.dashboard`. Each way of serving
it runs in turn, in the same run: Flask's development server (the baseline, what `app.run`
gives), waitress, and gunicorn, with and without the render cache.

Printed per server: refreshes/s, p50/p99 refresh latency after a warm-up (`--warm-up-s`, 5 s:
each view's first read, counted apart and printed too), errors (HTTP errors, timeouts and
refreshes that answered "database unavailable"), the most database connections the dashboard
held at once, and the server's CPU; then the p99 of each against the development server's.
Goal: 200 viewers on 2 cores with p99 <= 250 ms, no errors, connections bounded.

Half the viewers watch all customers, the others one of the 20 busiest customers; every viewer
uses the default range. The load comes from this process (asyncio, aiohttp); its own CPU is
printed too, since it shares the machine's two cores with the server and the database.

Run: `.venv/bin/python -m benchmarks.viewers [--viewers 200] [--seconds 30] [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from benchmarks.common import Ticker, tree_cpu_s
from benchmarks.dashboard import prepare_database
from benchmarks.harness import (
    Cells,
    Scenario,
    Target,
    db_params,
    millions,
    ms,
    percentile,
    say,
    setup_env,
    verdict,
)
from clickstream_pipeline.dashboard.server import SERVERS, Serving
from clickstream_pipeline.warehouse.database import ConnectionParams, fetch
from devkit.ports import free_port
from devkit.waits import wait_until

TARGET_P99_MS = 250.0
CUSTOMERS_WATCHED = 20


@dataclass(frozen=True)
class Contender:
    name: str
    serving: Serving


def contenders() -> list[Contender]:
    gunicorn = Serving(server="gunicorn")
    return [
        # what the dashboard was: Flask's server, a connection per concurrent refresh, no cache
        Contender("development", Serving(server="development", pool_size=64, cache_seconds=0)),
        Contender("waitress", Serving(server="waitress")),
        Contender("gunicorn, no cache", replace(gunicorn, cache_seconds=0)),
        Contender("gunicorn", gunicorn),
    ]


@dataclass
class Tally:
    warm_until: float  # refreshes started before: the warm-up (every view read once)
    latencies_ms: list[float] = field(default_factory=list)  # after the warm-up
    warm_up_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def took(self, started: float, ms: float) -> None:
        (self.warm_up_ms if started < self.warm_until else self.latencies_ms).append(ms)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def refresh_request(dependencies: list[dict], customer: str, tick: int) -> dict[str, Any]:
    """The body a browser posts to /_dash-update-component when the page's interval fires."""
    (callback,) = [d for d in dependencies if any(i["id"] == "refresh" for i in d["inputs"])]
    outputs = [
        {"id": part.split(".")[0], "property": part.split(".")[1]}
        for part in callback["output"].strip(".").split("...")
    ]
    values = {"refresh": tick, "customer": customer, "range": None}
    inputs = [
        {"id": i["id"], "property": i["property"], "value": values[i["id"]]}
        for i in callback["inputs"]
    ]
    return {
        "output": callback["output"],
        "outputs": outputs,
        "inputs": inputs,
        "changedPropIds": ["refresh.n_intervals"],
        "state": [],
    }


async def viewer(
    session: aiohttp.ClientSession,
    url: str,
    dependencies: list[dict],
    customer: str,
    interval_s: float,
    until: float,
    tally: Tally,
    rng: random.Random,
) -> None:
    """One viewer: the page, then a refresh every `interval_s` (a late one is not made up)."""
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with session.get(url, timeout=timeout) as page:
            await page.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        tally.error(f"page: {type(exc).__name__}")
        return
    await asyncio.sleep(rng.uniform(0, interval_s))
    tick = 0
    while time.monotonic() < until:
        tick += 1
        started = time.monotonic()
        body = refresh_request(dependencies, customer, tick)
        try:
            async with session.post(
                url + "_dash-update-component", json=body, timeout=timeout
            ) as answer:
                text = await answer.text()
                elapsed = (time.monotonic() - started) * 1000
                if answer.status != 200:
                    tally.error(f"HTTP {answer.status}")
                elif "database unavailable" in text:
                    tally.error("database unavailable")
                else:
                    tally.took(started, elapsed)
        except (TimeoutError, aiohttp.ClientError) as exc:
            tally.error(type(exc).__name__)
        await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))


async def watch(url: str, args: argparse.Namespace, customers: list[str]) -> Tally:
    viewers, interval_s, seconds = args.viewers, args.interval_s, args.seconds
    rng = random.Random(7)
    tally = Tally(warm_until=time.monotonic() + args.warm_up_s)
    connector = aiohttp.TCPConnector(limit=0)  # one keep-alive connection per viewer, as browsers
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url + "_dash-dependencies") as answer:
            dependencies = await answer.json()
        until = time.monotonic() + seconds
        watched = ["all" if i % 2 == 0 else rng.choice(customers) for i in range(viewers)]
        await asyncio.gather(
            *(
                viewer(session, url, dependencies, who, interval_s, until, tally, rng)
                for who in watched
            )
        )
    return tally


class ConnectionWatch:
    """The most connections the dashboard holds at once, read from pg_stat_activity."""

    def __init__(self, db: ConnectionParams) -> None:
        self.db, self.most = db, 0
        self.ticker = Ticker(self.read, 0.25)

    def read(self) -> None:
        count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        ((n,),) = fetch(self.db, count, ("clickstream-dashboard",))
        self.most = max(self.most, int(n))


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def start_server(contender: Contender, dbname: str, env: str, port: int) -> subprocess.Popen:
    """This module's `serve` in a process of its own: it reads the secrets itself."""
    s = contender.serving
    command = [sys.executable, "-m", "benchmarks.viewers", "serve", "--env", env]
    command += ["--dbname", dbname, "--port", str(port), "--server", s.server]
    command += ["--cache-seconds", str(s.cache_seconds), "--pool-size", str(s.pool_size)]
    log = Path(tempfile.mkstemp(prefix="bench-viewers-", suffix=".log")[1])
    with log.open("wb") as out:  # the child keeps its own descriptor
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: answers(url), 90, contender.name, every_s=0.3, process=process, log=log)
    except AssertionError:
        process.kill()
        raise
    return process


def measure(
    contender: Contender,
    db: ConnectionParams,
    env: str,
    args: argparse.Namespace,
    customers: list[str],
) -> dict[str, Any]:
    port = free_port()
    server = start_server(contender, db.dbname, env, port)
    connections = ConnectionWatch(db)
    try:
        connections.ticker.start()
        cpu0, own0, t0 = tree_cpu_s(server.pid), own_cpu_s(), time.monotonic()
        tally = asyncio.run(watch(f"http://127.0.0.1:{port}/", args, customers))
        wall = time.monotonic() - t0
        cpu, own = tree_cpu_s(server.pid) - cpu0, own_cpu_s() - own0
    finally:
        connections.ticker.stop()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    ms = tally.latencies_ms
    figures = {
        "serving": describe(contender.serving),
        "refreshes": len(ms),
        "refreshes_per_s": (len(ms) + len(tally.warm_up_ms)) / wall,
        "p50_ms": percentile(ms, 50) if ms else None,
        "p99_ms": percentile(ms, 99) if ms else None,
        "max_ms": max(ms) if ms else None,
        "warm_up_refreshes": len(tally.warm_up_ms),
        "warm_up_p99_ms": percentile(tally.warm_up_ms, 99) if tally.warm_up_ms else None,
        "errors": sum(tally.errors.values()),
        "errors_by_kind": tally.errors,
        "most_db_connections": connections.most,
        "server_cpu_cores": cpu / wall,
        "load_generator_cpu_cores": own / wall,
    }
    say(
        f"{contender.name}: {figures['refreshes_per_s']:.0f} refreshes/s, p50 "
        f"{figures['p50_ms'] or 0:.0f} ms, p99 {figures['p99_ms'] or 0:.0f} ms (warm-up: p99 "
        f"{figures['warm_up_p99_ms'] or 0:.0f} ms over {figures['warm_up_refreshes']}), "
        f"{figures['errors']} errors {tally.errors or ''}, at most {connections.most} database "
        f"connections; server {figures['server_cpu_cores']:.2f} cores, load generator "
        f"{figures['load_generator_cpu_cores']:.2f}"
    )
    return figures


def describe(serving: Serving) -> dict[str, Any]:
    return {
        "server": serving.server,
        "workers": serving.workers if serving.server == "gunicorn" else 1,
        "threads": serving.threads,
        "pool_size": serving.pool_size,
        "cache_seconds": serving.cache_seconds,
    }


def own_cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def busiest_customers(db: ConnectionParams) -> list[str]:
    rows = fetch(
        db,
        """SELECT customer_id FROM rollup_events_1hr GROUP BY customer_id
           ORDER BY sum(event_count) DESC LIMIT %s""",
        (CUSTOMERS_WATCHED,),
    )
    return [str(r[0]) for r in rows]


def serve_main(argv: list[str]) -> None:
    """`python -m benchmarks.viewers serve ...`: one contender, as the dashboard job serves."""
    from clickstream_pipeline.dashboard.server import serve

    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="local")
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=SERVERS, required=True)
    parser.add_argument("--cache-seconds", type=float, required=True)
    parser.add_argument("--pool-size", type=int, required=True)
    args = parser.parse_args(argv)
    _, secrets = setup_env(args.env)
    db = replace(db_params(secrets), dbname=args.dbname)
    serving = Serving(
        port=args.port,
        server=args.server,
        pool_size=args.pool_size,
        cache_seconds=args.cache_seconds,
    )
    serve(db, serving, refresh_seconds=10.0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    chunk = min(args.events, 1_000_000)
    build = argparse.Namespace(env=args.env, events=args.events, chunk=chunk, rebuild=False,
                               max_age_hours=6.0)  # fmt: skip
    db = prepare_database(build)
    customers = busiest_customers(db)
    say(f"{args.viewers} viewers, a refresh every {args.interval_s:g} s each, {args.seconds:g} s "
        f"per server, {args.events:,} events")  # fmt: skip
    results: dict[str, Any] = {
        "events": args.events,
        "viewers": args.viewers,
        "interval_s": args.interval_s,
        "seconds": args.seconds,
        "servers": {c.name: measure(c, db, args.env, args, customers) for c in contenders()},
    }
    baseline = results["servers"]["development"]["p99_ms"]
    for figures in results["servers"].values():
        p99 = figures["p99_ms"]
        figures["p99_over_development"] = p99 / baseline if baseline and p99 else None
    return results


def targets(f: dict[str, Any]) -> list[Target]:
    found = []
    for name, s in f["servers"].items():
        found += [
            Target(f"p99_le_250ms:{name}", s["p99_ms"], "<=", TARGET_P99_MS, "p99 <= 250 ms"),
            Target(f"no_errors:{name}", s["errors"], "<=", 0, "no errors"),
        ]
    chosen = f["servers"]["gunicorn"]
    bound = chosen["serving"]["workers"] * chosen["serving"]["pool_size"]
    found.append(Target("connections_bounded", chosen["most_db_connections"], "<=", bound,
                        f"gunicorn's connections <= {bound}"))  # fmt: skip
    return found


def rows(f: dict[str, Any]) -> list[Cells]:
    baseline = f["servers"]["development"]["p99_ms"]
    return [
        [f"dashboard, {f['viewers']} viewers refreshing every {f['interval_s']:g} s: {name}",
         f"p99 {ms(s['p99_ms'])}, {s['refreshes_per_s']:.0f} refreshes/s, {s['errors']} errors, "
         f"at most {s['most_db_connections']} connections",
         f"development server p99 {ms(baseline)}", f"{s['p99_over_development'] or 0:.2f}x p99",
         verdict(f, f"p99_le_250ms:{name}", f"no_errors:{name}",
                 *(["connections_bounded"] if name == "gunicorn" else []))]
        for name, s in f["servers"].items()
    ]  # fmt: skip


def headline(f: dict[str, Any], _citus: dict[str, Any] | None) -> Cells:
    ours, dev = f["servers"]["gunicorn"], f["servers"]["development"]
    return [
        f"dashboard, {f['viewers']} viewers refreshing every {f['interval_s']:g} s, "
        f"{millions(f['events'])} events",
        f"p99 {ms(ours['p99_ms'])}, {ours['errors']} errors, {ours['most_db_connections']} "
        "connections",
        f"Flask's development server p99 {ms(dev['p99_ms'])}",
        "",
    ]


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--interval-s", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="per server")
    parser.add_argument("--warm-up-s", type=float, default=5.0, help="first seconds, apart")


SCENARIO = Scenario(
    "viewers",
    __doc__ or "",
    run,
    quick={"events": 50_000, "viewers": 40, "seconds": 3.0, "warm_up_s": 1.0},
    arguments=arguments,
    targets=targets,
    rows=rows,
    headline=headline,
)

if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve_main(sys.argv[2:])
    else:
        SCENARIO.main()
        os._exit(0)  # nothing left to wait for
