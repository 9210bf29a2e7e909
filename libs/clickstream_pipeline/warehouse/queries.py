"""The lab's dashboard queries, shipped as named SQL files (`sql/queries/<name>.sql`).

Each file starts with `-- name: ...` and `-- description: ...` lines; the SQL is the lab's,
unchanged, so it runs on Citus (with TopN) and on plain PostgreSQL (with 0002_topn_compat).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from psycopg2.extensions import connection

from clickstream_pipeline.core.errors import SetupError


class UnknownQueryError(SetupError):
    pass


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    sql: str = field(repr=False)


def load_queries(package: str = "clickstream_pipeline.sql.queries") -> dict[str, NamedQuery]:
    queries = {}
    for entry in sorted(resources.files(package).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            query = _parse(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
            queries[query.name] = query
    return queries


def _parse(default_name: str, text: str) -> NamedQuery:
    header: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        key, sep, value = line[2:].partition(":")
        if sep and key.strip() in ("name", "description"):
            header[key.strip()] = value.strip()
    return NamedQuery(header.get("name", default_name), header.get("description", ""), text)


def get_query(name: str) -> NamedQuery:
    queries = load_queries()
    if name not in queries:
        raise UnknownQueryError(f"no query named {name!r}; known: {', '.join(queries)}")
    return queries[name]


def run_query(conn: connection, query: NamedQuery) -> tuple[list[str], list[tuple[Any, ...]]]:
    with conn.cursor() as cur:
        cur.execute(query.sql)
        columns = [d.name for d in cur.description or ()]
        return columns, cur.fetchall()


def format_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A plain aligned text table, as psql prints one."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def print_queries(conn: connection, queries: Iterable[NamedQuery]) -> None:
    """Run each query in its own read-only moment and print it as a timed table."""
    for query in queries:
        started = time.perf_counter()
        columns, rows = run_query(conn, query)
        elapsed_ms = (time.perf_counter() - started) * 1000
        conn.rollback()
        print(f"-- {query.name} ({elapsed_ms:.1f} ms): {query.description}")
        print(format_table(columns, rows) + "\n")
