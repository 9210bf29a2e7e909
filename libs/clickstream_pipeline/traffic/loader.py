"""Bulk-load lab-format CSV files into `events` with parallel COPY streams.

The lab's `\\COPY events(customer_id,event_type,country,browser,device_id,session_id) FROM
data/N.csv WITH (FORMAT CSV, HEADER TRUE)`, done N files at a time: each stream is one
connection (a thread) that takes the next file and COPYs it in its own transaction (psycopg2
`copy_expert`), so a file is loaded completely or not at all. The header names the columns
(any order; `event_time` may be one of them, else the table's default `now()` stamps the row).
"""

from __future__ import annotations

import csv
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from psycopg2 import sql
from psycopg2.extensions import connection

from clickstream_pipeline.core.cli import progress_bar
from clickstream_pipeline.core.errors import DatabaseError
from clickstream_pipeline.traffic import openmetrics
from clickstream_pipeline.traffic.generator import LAB_FIELDS
from clickstream_pipeline.warehouse.database import ConnectionParams, connect

log = logging.getLogger(__name__)

LOADABLE_COLUMNS = (*LAB_FIELDS, "event_time")
COPY_CHUNK = 1 << 20


class CsvHeaderError(ValueError):
    """A file's header is not a lab-format header."""


@dataclass
class FileResult:
    path: Path
    rows: int
    bytes: int
    seconds: float


@dataclass
class LoadResult:
    files: list[FileResult] = field(default_factory=list)
    streams: int = 1
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self, table: str) -> str:
        return (
            f"loaded {self.rows:,} rows from {len(self.files)} files "
            f"({self.bytes / 1e6:,.1f} MB) into {table} with {self.streams} COPY streams "
            f"in {self.seconds:.1f}s: {self.rows_per_s:,.0f} rows/s"
        )


def header_columns(path: Path) -> tuple[list[str], int]:
    """The header's column names and its length in bytes; CsvHeaderError if not lab format."""
    with path.open("rb") as handle:
        first = handle.readline()
    names = [n.strip() for n in next(csv.reader([first.decode("utf-8-sig")]), [])]
    unknown = [n for n in names if n not in LOADABLE_COLUMNS]
    missing = [n for n in LAB_FIELDS if n not in names]
    if unknown or missing or len(set(names)) != len(names):
        raise CsvHeaderError(
            f"{path}: header must name {','.join(LAB_FIELDS)} (and optionally event_time); "
            f"got {','.join(names) or 'nothing'}"
        )
    return names, len(first)


class _Counting:
    """A binary file whose reads advance a shared progress bar."""

    def __init__(self, handle: IO[bytes], advance: Callable[[int], None]) -> None:
        self.handle = handle
        self.advance = advance

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.advance(len(data))
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.handle.readline(size)
        self.advance(len(data))
        return data


def copy_file(
    conn: connection, path: Path, table: sql.Composable, advance: Callable[[int], None]
) -> int:
    """COPY one file (header skipped) in one transaction; returns the rows copied."""
    columns, header_len = header_columns(path)
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        table, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with path.open("rb") as handle:
        handle.seek(header_len)
        advance(header_len)
        with conn, conn.cursor() as cur:
            cur.copy_expert(statement, _Counting(handle, advance), size=COPY_CHUNK)
            return int(cur.rowcount)


def load_files(
    params: ConnectionParams,
    paths: Sequence[Path],
    streams: int = 2,
    schema: str = "public",
    table: str = "events",
    progress: bool | None = None,
    application_name: str = "clickstream-load",
    metrics_port: int | None = None,
) -> LoadResult:
    """Load every file with up to `streams` parallel COPY streams; raises on the first failure.

    Files are taken largest first. A failed file is rolled back; files already committed stay.
    """
    if streams < 1:
        raise ValueError("streams must be >= 1")
    files = sorted(paths, key=lambda p: p.stat().st_size, reverse=True)
    for path in files:
        header_columns(path)  # every header checked before anything is loaded
    target = sql.Identifier(schema, table)
    work: queue.Queue[Path] = queue.Queue()
    for path in files:
        work.put(path)
    streams = min(streams, len(files)) or 1
    result = LoadResult(streams=streams)
    failures: list[tuple[Path, BaseException]] = []
    lock = threading.Lock()
    stop = threading.Event()
    bar = progress_bar(sum(p.stat().st_size for p in files), "B", "load", progress)
    bytes_read = [0]

    def advance(n: int) -> None:
        with lock:
            bar.update(n)
            bytes_read[0] += n

    if openmetrics.serve(metrics_port):
        openmetrics.watch_loader(
            f"{schema}.{table}",
            rows=lambda: result.rows,
            bytes_read=lambda: bytes_read[0],
            files=lambda: len(result.files),
        )

    def stream(number: int) -> None:
        try:
            conn = connect(params, f"{application_name}-{number}")
        except BaseException as exc:
            with lock:
                failures.append((Path("<connect>"), exc))
            stop.set()
            return
        try:
            conn.set_client_encoding("UTF8")
            while not stop.is_set():
                try:
                    path = work.get_nowait()
                except queue.Empty:
                    return
                began = time.monotonic()
                try:
                    rows = copy_file(conn, path, target, advance)
                except BaseException as exc:
                    with lock:
                        failures.append((path, exc))
                    stop.set()
                    return
                done = FileResult(path, rows, path.stat().st_size, time.monotonic() - began)
                with lock:
                    result.files.append(done)
                    bar.set_postfix(rows=f"{result.rows:,}", files=len(result.files))
                log.debug("stream %d: %s, %d rows", number, path, rows)
        finally:
            conn.close()

    started = time.monotonic()
    threads = [
        threading.Thread(target=stream, args=(n,), name=f"copy-{n}", daemon=True)
        for n in range(1, streams + 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bar.close()
    result.seconds = time.monotonic() - started
    if failures:
        path, exc = failures[0]
        loaded = ", ".join(str(f.path) for f in result.files) or "none"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, ConnectionError):
            raise exc
        raise DatabaseError(
            f"loading {path} failed ({type(exc).__name__}: {message}); "
            f"files committed before the failure: {loaded}"
        ) from None
    return result
