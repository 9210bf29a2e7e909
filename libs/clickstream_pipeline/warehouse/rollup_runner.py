"""Rollups after ingest batches, off the batches' critical path.

One driver thread per query runs the rollup functions of the registry (`rollups.function_name`,
finest grain first: the lab's `five_minutely_aggregation()`, `hourly_aggregation()` and
`dashboard_aggregation()`, and any the event model adds) whenever a batch asks; requests that
arrive during a run are served by one more run (coalesced), never by two at once. The functions
themselves keep every event counted once (`incremental_rollup_window` locks the rollup's row
and waits out in-flight writers), so a run that dies half-way is rolled back and done by the
next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from psycopg2 import sql

from clickstream_pipeline.warehouse.database import open_connection
from clickstream_pipeline.warehouse.rollups import registered_functions

log = logging.getLogger(__name__)


def aggregate(connect_kwargs: dict[str, Any]) -> list[tuple[str, int]]:
    """One run of every incremental rollup, each in a transaction of its own; then the batches
    whose events every rollup now holds are stamped `rolled_up_at`: (query, batch id) each."""
    conn = open_connection(connect_kwargs)
    try:
        with conn:
            functions = registered_functions(conn)
        for function in functions:
            with conn, conn.cursor() as cur:
                cur.execute(sql.SQL("SELECT {}()").format(sql.Identifier("public", function)))
        with conn, conn.cursor() as cur:
            cur.execute("SELECT * FROM clickstream_stamp_rolled_up_batches()")
            return [(str(query), int(batch)) for query, batch in cur.fetchall()]
    finally:
        conn.close()


class RollupRunner:
    def __init__(self, name: str, run: Callable[[], None]) -> None:
        self.name = name
        self._run = run
        self._wanted = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last_error: BaseException | None = None

    def request(self) -> None:
        """Ask for a run after the current one (if any); returns at once."""
        with self._lock:
            self._idle.clear()
            self._wanted.set()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=f"rollups-{self.name}", daemon=True
                )
                self._thread.start()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Block until no run is wanted or running (tests, shutdown)."""
        return self._idle.wait(timeout_s)

    def _loop(self) -> None:
        while True:
            self._wanted.wait(60)
            with self._lock:
                if not self._wanted.is_set():  # idle for a minute: the next request starts one
                    self._thread = None
                    return
                self._wanted.clear()
            started = time.monotonic()
            try:
                self._run()
                self.runs += 1
                self.last_error = None
                log.info("rollups of %s in %.2fs", self.name, time.monotonic() - started)
            except Exception as exc:  # incremental functions: the next run catches up
                self.last_error = exc
                log.warning(
                    "rollups of %s failed (%s); run again after the next batch", self.name, exc
                )
            with self._lock:
                if not self._wanted.is_set():
                    self._idle.set()


_RUNNERS: dict[str, RollupRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def runner_for(name: str, run: Callable[[], None]) -> RollupRunner:
    """The query's runner (one per query name in this driver)."""
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(name)
        if runner is None:
            runner = _RUNNERS[name] = RollupRunner(name, run)
        return runner


def drain(name: str, timeout_s: float) -> bool:
    """Wait until the query's runner (if it has one) has served every request, at most
    `timeout_s`: a job calls this before it returns, so its last batches are rolled up.
    False when runs were still due at the deadline (pg_cron's schedule then catches up)."""
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(name)
    if runner is None:
        return True
    started = time.monotonic()
    if not runner.wait_idle(timeout_s):
        log.warning(
            "rollups of %s still running after %.0f s: leaving them to the rollups' schedule",
            name,
            timeout_s,
        )
        return False
    if runner.last_error is not None:
        log.warning("the last rollup run of %s failed: the rollups' schedule catches up", name)
    log.info("rollups of %s drained in %.2fs", name, time.monotonic() - started)
    return True
