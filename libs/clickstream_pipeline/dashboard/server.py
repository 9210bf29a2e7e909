"""Serving the dashboard: the Dash app behind a production WSGI server.

gunicorn (the default, measured best: `benchmarks/viewers.py`) forks `workers` processes of
`threads` threads each, so the Python work of rendering uses every core; each process has its
own bounded connection pool and render cache, so the database sees at most
`workers x pool_size` connections however many viewers there are. waitress (one process,
threads; also on Windows) and Flask's development server are there to compare and for
machines without gunicorn.
"""

from __future__ import annotations

import logging
import queue
import threading
from base64 import b64encode
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from psycopg2.extensions import connection
from pydantic import SecretStr

from clickstream_pipeline.dashboard.panels import (
    DashboardRollup,
    DimensionValue,
    Snapshot,
    View,
    load_breakdown,
    load_snapshot,
    prepare_session,
)
from clickstream_pipeline.warehouse.database import ConnectionParams, connect

log = logging.getLogger(__name__)

APPLICATION_NAME = "clickstream-dashboard"

Server = Literal["gunicorn", "waitress", "development"]
SERVERS: tuple[Server, ...] = ("gunicorn", "waitress", "development")


@dataclass(frozen=True)
class Serving:
    """Where and how to serve, and how much each process may hold."""

    host: str = "127.0.0.1"
    port: int = 8050
    server: Server = "gunicorn"
    workers: int = 2  # gunicorn processes
    threads: int = 8  # per process (gunicorn, waitress)
    pool_size: int = 4  # database connections per process, at most
    cache_seconds: float = 5.0  # a view's panels are reused this long (0: read every time)
    keepalive_s: int = 75  # idle connections stay open longer than a page's refresh interval
    connection_limit: int = 1000  # open client connections (waitress; gunicorn's default)


class ConnectionPool:
    """At most `size` connections open at once, opened on demand and kept while idle; a broken
    one is dropped. A caller beyond `size` waits for one to come back."""

    def __init__(self, params: ConnectionParams, size: int = 4, connect_timeout: int = 5):
        if size < 1:  # a pool of none would make every request wait forever
            raise ValueError(f"a connection pool holds at least 1 connection, not {size}")
        self._params = params
        self._timeout = connect_timeout
        self._idle: queue.LifoQueue[connection] = queue.LifoQueue(maxsize=size)
        self._slots = threading.BoundedSemaphore(size)

    def _open(self) -> connection:
        conn = connect(self._params, APPLICATION_NAME, self._timeout)
        try:
            prepare_session(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def connection(self) -> Iterator[connection]:
        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._open()
            try:
                yield conn
            except BaseException:
                conn.close()
                raise
            self._idle.put_nowait(conn)  # never full: a slot is held per connection

    def snapshot(self, view: View) -> Snapshot:
        with self.connection() as conn:
            return load_snapshot(conn, view)

    def breakdown(
        self, rollup: DashboardRollup, view: View, dimension: str
    ) -> list[DimensionValue]:
        with self.connection() as conn:
            return load_breakdown(conn, rollup, view, dimension)


def check_database(params: ConnectionParams, schema: str, connect_timeout: int) -> None:
    """Read one snapshot on a connection of its own, closed before any worker forks."""
    conn = connect(params, APPLICATION_NAME, connect_timeout)
    try:
        prepare_session(conn)
        load_snapshot(conn, View(schema=schema))
    finally:
        conn.close()


def app_factory(
    params: ConnectionParams,
    serving: Serving,
    refresh_seconds: float,
    schema: str,
    connect_timeout: int,
    login: tuple[str, SecretStr] | None,
    rollup: DashboardRollup | None = None,
) -> Callable[[], Any]:
    """Builds the WSGI app, once per serving process (its pool and cache are its own); with
    the model's dashboard `rollup`, its Breakdown card reads from the same pool."""

    def make() -> Any:
        from clickstream_pipeline.dashboard.app import create_app, require_login  # Dash

        pool = ConnectionPool(params, size=serving.pool_size, connect_timeout=connect_timeout)
        app = create_app(
            pool.snapshot,
            refresh_seconds,
            schema,
            serving.cache_seconds,
            rollup=rollup,
            load_breakdown=None if rollup is None else partial(pool.breakdown, rollup),
        )
        headers = {}
        if login is not None:
            require_login(app, *login)
            user, password = login[0], login[1].get_secret_value()
            headers["Authorization"] = "Basic " + b64encode(f"{user}:{password}".encode()).decode()
        # Dash lets a process serve its JavaScript only once that process has rendered the
        # page; with several processes a browser's script request can reach another one first
        app.server.test_client().get("/", headers=headers)
        return app.server

    return make


def serve(
    params: ConnectionParams,
    serving: Serving,
    refresh_seconds: float,
    schema: str = "public",
    connect_timeout: int = 5,
    login: tuple[str, SecretStr] | None = None,
    rollup: DashboardRollup | None = None,
) -> None:
    """Serve the dashboard until interrupted; behind a login when `login` is given; with the
    Breakdown card of the model's dashboard `rollup`, if any."""
    check_database(params, schema, connect_timeout)  # fail at start-up when unreachable
    make = app_factory(params, serving, refresh_seconds, schema, connect_timeout, login, rollup)
    log.info(
        "dashboard on http://%s:%d/ (%s, database %s, refresh every %gs, %s%s)",
        serving.host,
        serving.port,
        describe(serving),
        params.describe(),
        refresh_seconds,
        f"login as {login[0]}" if login else "no login",
        "" if rollup is None else f", breakdowns of {rollup.table}",
    )
    if serving.server == "gunicorn":
        run_gunicorn(make, serving)
    elif serving.server == "waitress":
        import waitress

        waitress.serve(
            make(),
            host=serving.host,
            port=serving.port,
            threads=serving.threads,
            connection_limit=serving.connection_limit,  # waitress's default 100: one per viewer
            channel_timeout=serving.keepalive_s,
        )
    else:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        make().run(host=serving.host, port=serving.port, debug=False, threaded=True)


def describe(serving: Serving) -> str:
    if serving.server == "gunicorn":
        shape = f"{serving.workers} processes x {serving.threads} threads"
    elif serving.server == "waitress":
        shape = f"{serving.threads} threads"
    else:
        shape = "Flask's development server"
    pool = f"at most {serving.pool_size} database connections per process"
    return f"{serving.server}: {shape}, {pool}, panels cached {serving.cache_seconds:g}s"


def run_gunicorn(make: Callable[[], Any], serving: Serving) -> None:
    """gunicorn's documented custom application: its options from `serving`, the app built in
    each worker after the fork (so no connection crosses a fork)."""
    from gunicorn.app.base import BaseApplication

    class Dashboard(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": f"{serving.host}:{serving.port}",
                "workers": serving.workers,
                "threads": serving.threads,
                "worker_class": "gthread",
                "worker_connections": serving.connection_limit,
                # gunicorn's default 2 s closes a viewer's connection between two refreshes,
                # racing the next request (a reset connection)
                "keepalive": serving.keepalive_s,
                "loglevel": "warning",  # no access log, no line per request
                "graceful_timeout": 5,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return make()

    Dashboard().run()
