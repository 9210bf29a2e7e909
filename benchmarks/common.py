"""What the benchmarks measure with: database server CPU, a process tree's CPU and peak memory
(psutil), and `psql \\copy` as a baseline. The flags, targets, printing and results are the
harness's (`benchmarks/harness.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.harness import (
    ENVS,
)
from clickstream_pipeline.warehouse.database import ConnectionParams, connect
from devkit.db import citus_workers

# --- processes: CPU and memory, read with psutil ---------------------------------------------


def postmaster_pids(params: ConnectionParams) -> dict[str, int]:
    """host:port -> postmaster pid of the server behind `params` and, on Citus, each worker.

    Each server is found through a connection of its own: the backend serving it is a child
    of that server's postmaster. A server that does not run on this machine cannot be
    measured, and says so.
    """
    found = {}
    for node in (params, *citus_workers(params)):
        conn = connect(node)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                (backend,) = cur.fetchone()
            try:
                postmaster = psutil.Process(backend).parent()
                program = postmaster.cmdline()[0].split(" ", 1)[0] if postmaster else ""
            except (psutil.Error, IndexError):
                postmaster, program = None, ""
            if postmaster is None or postmaster.pid <= 1 or not program.endswith("postgres"):
                raise RuntimeError(
                    f"the database server at {node.host}:{node.port} does not run on this "
                    "machine (its backend is not a local process): its CPU cannot be measured"
                )
            found[f"{node.host}:{node.port}"] = postmaster.pid
        finally:
            conn.close()
    return found


def children(pid: int) -> list[int]:
    """A process's children from the kernel's own list. psutil's `children()` reads every
    process on the machine instead (4 ms a call here: a tenth of a core at the CPU meter's
    50 ms, counted as the benchmark's own CPU)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


@dataclass
class CpuReading:
    total_s: float  # every child of the postmaster, live and reaped (the server's own count)
    own_s: float  # backends of the benchmark's database plus the shared writers
    foreign_s: float  # backends of other databases (other people's work on the same server)


class Ticker:
    """Calls `tick` every `interval_s` on a daemon thread from `start` until `stop`."""

    def __init__(self, tick: Callable[[], None], interval_s: float) -> None:
        self._tick = tick
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._tick()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class DbCpuMeter:
    """Server CPU over a run: postmaster children's user+system, plus the postmaster's reaped
    children's, summed over every server behind the database (on Citus: the coordinator and
    each worker).

    A sampler (every 50 ms) also attributes CPU per backend by its process title, so work of
    other databases on the same servers can be told apart (`own_s`, `foreign_s`).
    """

    db: ConnectionParams
    interval_s: float = 0.05
    servers: dict[str, int] = field(default_factory=dict)
    _start_total: float = 0.0
    _processes: dict[int, psutil.Process] = field(default_factory=dict)
    _first: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _title: dict[int, str] = field(default_factory=dict)
    _ticker: Ticker | None = None

    def _children(self) -> list[int]:
        return [child for pm in self.servers.values() for child in children(pm)]

    def _total(self) -> float:
        seconds = 0.0
        for pm in self.servers.values():
            times = psutil.Process(pm).cpu_times()
            seconds += times.children_user + times.children_system
        for child in self._children():
            with contextlib.suppress(psutil.Error):
                seconds += _cpu_s(self._processes.get(child) or psutil.Process(child))
        return seconds

    def _sample(self, first: bool = False) -> None:
        for pid in self._children():
            try:
                process = self._processes.get(pid) or psutil.Process(pid)
                seconds = _cpu_s(process)
                if pid not in self._title:
                    self._title[pid] = " ".join(process.cmdline()).strip()
            except psutil.Error:
                continue
            if pid not in self._processes:
                self._processes[pid] = process
                self._first[pid] = seconds if first else 0.0
            self._last[pid] = seconds

    def __enter__(self) -> DbCpuMeter:
        self.servers = postmaster_pids(self.db)
        self._sample(first=True)
        self._start_total = self._total()
        self._ticker = Ticker(self._sample, self.interval_s)
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        self._sample()
        self.reading = self._read()

    def _read(self) -> CpuReading:
        own = foreign = 0.0
        marker = f" {self.db.dbname} "
        for pid, title in self._title.items():
            delta = self._last.get(pid, 0.0) - self._first.get(pid, 0.0)
            parts = title.split()
            is_backend = len(parts) >= 4 and parts[0] == "postgres:" and "(" in title
            if marker in f" {title} " or not is_backend:
                own += delta  # this database's backends, checkpointer, walwriter, bgwriter...
            else:
                foreign += delta
        total = self._total() - self._start_total
        if total <= 0 or own <= 0:
            raise RuntimeError(
                f"measured no CPU of database {self.db.dbname} on the servers "
                f"{', '.join(f'{k} (pid {v})' for k, v in self.servers.items())}: "
                "the meter is not watching the server that did the work"
            )
        return CpuReading(total, own, foreign)


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its descendants, live and reaped (user, system and their
    reaped children's).

    The difference of two readings is the tree's CPU in between: a child's CPU moves into its
    parent's reaped-children count when it is reaped, and a new child counts in full.
    """
    seconds = 0.0
    for member in _tree(pid):
        with contextlib.suppress(psutil.Error):
            times = member.cpu_times()
            seconds += times.user + times.system + times.children_user + times.children_system
    return seconds


@dataclass
class PeakMemory:
    """Peak resident memory of a process tree, sampled every `interval_s` (and on exit): the
    root's, the whole tree's (summed), and each descendant's whose command line holds `marked`
    (say the Python workers under Spark's JVM), with their sum. Figures in MiB."""

    root: int
    marked: str = ""
    interval_s: float = 0.5
    root_peak_mib: float = 0.0
    tree_peak_mib: float = 0.0
    marked_peak_mib: dict[int, float] = field(default_factory=dict)
    marked_total_peak_mib: float = 0.0
    _ticker: Ticker | None = None

    def sample(self) -> None:
        try:
            members = _tree(self.root)
        except psutil.Error:  # the root is gone
            return
        tree = marked = 0.0
        for member in members:
            try:
                mib = member.memory_info().rss / (1 << 20)
                is_marked = (
                    self.marked
                    and member.pid != self.root
                    and self.marked in " ".join(member.cmdline())
                )
            except psutil.Error:  # gone, or a zombie
                continue
            tree += mib
            if member.pid == self.root:
                self.root_peak_mib = max(self.root_peak_mib, mib)
            if is_marked:
                self.marked_peak_mib[member.pid] = max(self.marked_peak_mib.get(member.pid, 0), mib)
                marked += mib
        self.tree_peak_mib = max(self.tree_peak_mib, tree)
        self.marked_total_peak_mib = max(self.marked_total_peak_mib, marked)

    def __enter__(self) -> PeakMemory:
        self.sample()
        self._ticker = Ticker(self.sample, self.interval_s)
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        self.sample()


def psql_copy(params: ConnectionParams, columns: tuple[str, ...], files: list[Path],
              direction: str = "from") -> float:  # fmt: skip
    """`psql \\copy` of each file, one psql per file, all at once; returns wall seconds."""
    env = {**os.environ, **params.libpq_env()}
    copy = "\\copy events ({}) {} '{}' with (format csv)"
    started = time.perf_counter()
    procs = [subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                               copy.format(", ".join(columns), direction, f)], env=env)
             for f in files]  # fmt: skip
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"psql \\copy failed: exit codes {codes}")
    return time.perf_counter() - started


# --- the studies' calls ---


def benchmark_parser(doc: str | None, quick: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--out", type=Path, default=None, help="a JSON file of its own")
    parser.add_argument("--env", default="local", choices=list(ENVS))
    return parser


def finish(
    name: str, args: argparse.Namespace, results: dict[str, Any], folder: Path
) -> dict[str, Any]:
    """A study's results as `<folder>/<name>.json` (or `--out`)."""
    from benchmarks import harness

    harness.store(name, results, args.out or folder / f"{name}{ENVS[args.env]}.json")
    return results
