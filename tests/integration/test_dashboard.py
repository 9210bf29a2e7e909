"""The live dashboard in headless Chromium: its panels show the rollups' numbers, follow the
customer and range selectors, and pick up a new batch on their own.

The dashboard runs as its entry point (`clickstream-dashboard`) against a scratch database,
logged in as a member of the read-only role (sql/roles/dashboard_readonly.sql). Set
CLICKSTREAM_SCREENSHOT=docs/dashboard.png to keep the screenshot (the README's).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import pytest
from psycopg2 import sql
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from clickstream_pipeline.dashboard.server import ConnectionPool
from clickstream_pipeline.warehouse.database import ConnectionParams
from clickstream_pipeline.warehouse.rollups import REGISTERED_FUNCTIONS
from devkit.db import bootstrapped_database, copy_events, create_login, query
from devkit.ports import free_port
from devkit.waits import WaitTimeout, wait_until
from tests.conftest import PROJECT_DIR
from tests.integration.test_rollups import HEAVY, close, synthetic_events

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# a refresh's response that arrives after the next refresh has started is dropped by Dash:
# 2 s, not 1, so a loaded machine's slower responses still land
REFRESH_S = 2
WAIT_S = 30  # a deadline: a passing wait returns as soon as the page shows it
T = TypeVar("T")
# what reading a panel raises while it is not (or being re-) rendered
NOT_RENDERED = (
    ValueError,
    KeyError,
    TypeError,
    NoSuchElementException,
    StaleElementReferenceException,
)

SIX_HOURS = "minute >= now() - interval '6 hours' AND minute <= now()"
WEEK = "hour >= now() - interval '7 days' AND hour <= now()"
KPIS = """SELECT sum(event_count), round(hll_cardinality(hll_union_agg(device_distinct_count))),
                 round(hll_cardinality(hll_union_agg(session_distinct_count)))
          FROM {table} WHERE {where}"""


@dataclass
class Dashboard:
    db: ConnectionParams
    reader: ConnectionParams  # the dashboard's login
    url: str
    driver: webdriver.Chrome
    process: subprocess.Popen


def jdbc_url(params: ConnectionParams) -> str:
    """The login's JDBC URL with its password, TLS settings kept."""
    return params.jdbc_url(with_credentials=True)


def rollups(db: ConnectionParams) -> None:
    """One run of every rollup function in the registry."""
    for (function,) in query(db, REGISTERED_FUNCTIONS):
        query(db, f"SELECT {function}()")


def record_batch(
    db: ConnectionParams,
    batch_id: int,
    ago_s: float,
    rows: int,
    dead: int,
    rolled_up_after_s: float | None = None,
) -> None:
    """One row of the ingest job's bookkeeping, as the job writes it (and the rollup runner
    stamps it, `rolled_up_after_s` after the commit)."""
    query(
        db,
        """INSERT INTO clickstream_ingest_batches (query_name, batch_id, rows_read, rows_written,
               rows_duplicate, rows_dead_lettered, offsets, started_at, committed_at, seconds,
               rows_per_second, max_delay_seconds, min_delay_seconds, rolled_up_at)
           VALUES ('clickstream-ingest', %s, %s, %s, 0, %s, '{}',
                   now() - make_interval(secs => %s + 2), now() - make_interval(secs => %s),
                   2, %s, 4.5 + %s, 1.5, now() - make_interval(secs => %s - %s))""",
        (
            batch_id,
            *(rows + dead, rows, dead, ago_s, ago_s, (rows + dead) / 2, batch_id),
            *(ago_s, rolled_up_after_s),
        ),
    )


def record_tenants(db: ConnectionParams, batch_id: int, tenants: list[tuple]) -> None:
    """A batch's freshness per tenant, as the job writes it: (customer or None, customers,
    rows, max delay, min delay)."""
    for customer, customers, rows, slowest, newest in tenants:
        query(
            db,
            """INSERT INTO clickstream_ingest_tenant_freshness (query_name, batch_id,
                   customer_id, customers, rows_written, max_delay_seconds, min_delay_seconds,
                   committed_at)
               SELECT query_name, batch_id, %s, %s, %s, %s, %s, committed_at
               FROM clickstream_ingest_batches WHERE batch_id = %s""",
            (customer, customers, rows, slowest, newest, batch_id),
        )


def wait_for(
    read: Callable[[], T], expected: Callable[[], Any], what: str, wait_s: float = WAIT_S
) -> T:
    """Poll the page until `read()` equals `expected()` (both re-evaluated); fail after
    `wait_s`."""
    deadline = time.monotonic() + wait_s
    seen: Any = "nothing readable"
    while True:
        try:
            got = read()
        except NOT_RENDERED:  # re-rendered under us: read again
            pass
        else:
            seen = got
            if got == expected():
                return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: page shows {seen!r}, expected {expected()!r}")
        time.sleep(0.25)


def expect(read: Callable[[], T], value: Any, what: str, wait_s: float = WAIT_S) -> T:
    return wait_for(read, lambda: value, what, wait_s)


def shown(driver: webdriver.Chrome, element_id: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f"#{element_id} [data-value]").get_attribute(
        "data-value"
    )


def shown_int(driver: webdriver.Chrome, element_id: str) -> int:
    return int(shown(driver, element_id))


def kpis_shown(driver: webdriver.Chrome) -> tuple[int, int, int]:
    return tuple(shown_int(driver, f"kpi-{k}") for k in ("events", "devices", "sessions"))


def pipeline_shown(driver: webdriver.Chrome) -> tuple[datetime, float, float, int]:
    return (
        datetime.fromisoformat(shown(driver, "pipe-last-batch")),
        float(shown(driver, "pipe-rows-per-second")),
        float(shown(driver, "pipe-delay")),
        shown_int(driver, "pipe-dead-letters"),
    )


def traces(driver: webdriver.Chrome, element_id: str) -> dict[str, dict[Any, Any]]:
    """The drawn data of a Plotly chart: trace name -> {category or time: value}."""
    data = driver.execute_script(
        """const plot = document.getElementById(arguments[0]).querySelector('.js-plotly-plot');
           return JSON.stringify((plot && plot.data || []).map(t => ({name: t.name,
               h: t.orientation === 'h', x: Array.from(t.x), y: Array.from(t.y)})));""",
        element_id,
    )
    out = {}
    for t in json.loads(data):
        keys, values = (t["y"], t["x"]) if t["h"] else (t["x"], t["y"])
        out[t["name"]] = dict(zip(keys, values, strict=True))
    if not out:
        raise ValueError(f"{element_id} not drawn yet")
    return out


def slow_tenants_shown(driver: webdriver.Chrome) -> dict[str, tuple[float, float | None, int]]:
    """customer -> (to events, to the rollups or None where not rolled up yet, rows)."""
    rows = driver.execute_script(
        """return Array.from(document.querySelectorAll('#slow-tenants tr[data-key]')).map(
               r => [r.getAttribute('data-key')].concat(Array.from(r.querySelectorAll('td'))
                   .slice(1).map(td => { const v = td.querySelector('[data-value]');
                                         return v ? v.getAttribute('data-value') : null; })));"""
    )
    return {
        key: (float(delay), None if rolled is None else float(rolled), int(n))
        for key, delay, rolled, n in rows
    }


def by_time(points: dict[str, int]) -> dict[datetime, int]:
    return {datetime.fromisoformat(when): n for when, n in points.items()}


def table_shown(driver: webdriver.Chrome) -> dict[str, int]:
    # one script reads every row at once: row by row, a refresh every second on a busy machine
    # replaced the table between reads, for as long as the test waited
    rows = driver.execute_script(
        """return Array.from(document.querySelectorAll('#top-table tr[data-key]')).map(
               r => [r.getAttribute('data-key'),
                     (r.querySelector('[data-value]') || {getAttribute: () => null})
                         .getAttribute('data-value')]);"""
    )
    return {key: int(value) for key, value in rows}


def sql_kpis(db: ConnectionParams, table: str, where: str) -> tuple[int, int, int]:
    (row,) = query(db, KPIS.format(table=table, where=where))
    return tuple(int(v) for v in row)


def choose(driver: webdriver.Chrome, customer: str | None = None, range_key: str | None = None):
    if customer is not None:

        def pick_customer() -> None:
            driver.find_element(By.ID, "customer").click()
            option = driver.find_element(
                By.CSS_SELECTOR, f".dash-dropdown-option input[value='{customer}']"
            )
            option.find_element(By.XPATH, "./ancestor::label").click()

        retried(pick_customer)
    if range_key is not None:

        def pick_range() -> None:
            radio = driver.find_element(By.CSS_SELECTOR, f"#range input[value='{range_key}']")
            radio.find_element(By.XPATH, "./ancestor::label").click()

        retried(pick_range)


def retried(action: Callable[[], None]) -> None:
    """Run a page interaction again when a refresh re-rendered its elements under it."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            action()
            return
        except (NoSuchElementException, StaleElementReferenceException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def start_browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1120"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def read_only_login(db: ConnectionParams) -> ConnectionParams:
    """A login in the read-only group role of sql/roles/dashboard_readonly.sql."""
    role_file = resources.files("clickstream_pipeline.sql.roles") / "dashboard_readonly.sql"
    query(db, role_file.read_text(encoding="utf-8"))
    return create_login(db, "clickstream_dashboard")


def start_dashboard(
    reader: ConnectionParams, log: Path, *extra: str
) -> tuple[subprocess.Popen, str]:
    """`clickstream-dashboard --env local` as `reader` (with `extra` flags), once it answers."""
    port = free_port()
    env = {**os.environ, "DATABASE_CONNECTION_STRING": jdbc_url(reader)}
    command = [sys.executable, "-m", "clickstream_pipeline.jobs.dashboard", "--env", "local"]
    command += ["--set", "secrets.backend=env", "--port", str(port)]
    command += ["--refresh-seconds", str(REFRESH_S), *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until(lambda: answers(url), 60, "the dashboard", every_s=0.2, process=process, log=log)
    except WaitTimeout:
        process.kill()
        raise
    return process, url


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def dashboard(tier, tmp_path_factory) -> Iterator[Dashboard]:
    main = tier.db
    with bootstrapped_database(main) as db:
        now = datetime.now(UTC)
        copy_events(
            db, synthetic_events(random.Random(31), 20_000, now - timedelta(minutes=50), 2900)
        )
        rollups(db)
        record_batch(db, 1, ago_s=600, rows=9_000, dead=12, rolled_up_after_s=1.25)
        record_batch(db, 2, ago_s=30, rows=11_000, dead=5)
        record_tenants(db, 1, [(42, 1, 5000, 5.5, 1.5), (7, 1, 3000, 5.0, 1.5)])
        record_tenants(db, 1, [(None, 90, 1000, 4.0, 1.5)])
        record_tenants(db, 2, [(7, 1, 6000, 6.5, 1.6), (13, 1, 4000, 3.0, 1.5)])
        record_tenants(db, 2, [(None, 50, 1000, 2.0, 1.5)])
        reader = read_only_login(db)
        log = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
        process, url = start_dashboard(reader, log)
        driver = start_browser()
        try:
            yield Dashboard(db, reader, url, driver, process)
        finally:
            driver.quit()
            process.terminate()
            process.wait(timeout=20)
            query(db, sql.SQL("DROP ROLE {}").format(sql.Identifier(reader.user)))


def test_default_view_shows_the_all_customer_rollups(dashboard, tmp_path):
    db, driver = dashboard.db, dashboard.driver
    driver.get(dashboard.url)
    kpis = wait_for(
        lambda: kpis_shown(driver),
        lambda: sql_kpis(db, "rollup_totals_5min", SIX_HOURS),
        "KPI tiles",
    )
    (raw,) = query(
        db, "SELECT count(*), count(DISTINCT device_id), count(DISTINCT session_id) FROM events"
    )
    assert kpis[0] == raw[0] == 20_000 + sum(HEAVY.values())
    assert close(kpis[1], raw[1]) and close(kpis[2], raw[2])

    trend = query(
        db,
        f"""SELECT minute, event_count, round(hll_cardinality(device_distinct_count)),
                   round(hll_cardinality(session_distinct_count))
            FROM rollup_totals_5min WHERE {SIX_HOURS}""",
    )
    names = ("events", "devices", "sessions")
    expect(
        lambda: {name: by_time(points) for name, points in traces(driver, "trend").items()},
        {name: {t[0]: int(t[i]) for t in trend} for i, name in enumerate(names, start=1)},
        "trend",
    )

    def by(columns: str) -> dict[Any, int]:
        rows = query(
            db,
            f"SELECT {columns}, sum(event_count) FROM rollup_dimensions_5min "
            f"WHERE {SIX_HOURS} GROUP BY {columns}",
        )
        return {r[:-1] if len(r) > 2 else r[0]: int(r[-1]) for r in rows}

    expect(lambda: traces(driver, "by-country"), {"events": by("country")}, "by country")
    expect(lambda: traces(driver, "by-event-type"), {"events": by("event_type")}, "by type")
    expect(
        lambda: {
            (browser, country): n
            for browser, by_country in traces(driver, "by-browser-country").items()
            for country, n in by_country.items()
        },
        by("browser, country"),
        "by browser and country",
    )
    raw_countries = dict(query(db, "SELECT country, count(*) FROM events GROUP BY 1"))
    assert by("country") == raw_countries

    busiest = query(
        db,
        f"""SELECT customer_id::text, sum(event_count) FROM rollup_customer_totals_5min
            WHERE {SIX_HOURS} GROUP BY customer_id ORDER BY 2 DESC, customer_id LIMIT 10""",
    )
    expect(lambda: table_shown(driver), {c: int(n) for c, n in busiest}, "busiest customers")

    (last,) = query(db, "SELECT committed_at FROM clickstream_ingest_batches WHERE batch_id = 2")
    expect(lambda: pipeline_shown(driver), (last[0], 5_502.5, 6.5, 17), "pipeline panel")
    freshness = query(
        db,
        """SELECT date_bin('5 minutes', committed_at, timestamptz '2000-01-01'),
                  max(max_delay_seconds)
           FROM clickstream_ingest_batches WHERE committed_at >= now() - interval '6 hours'
           GROUP BY 1""",
    )
    # batch 1 (5.5 s to the commit) is in the rollups 1.25 s later; batch 2 not yet
    ten_minutes_ago = min(bucket for bucket, _ in freshness)
    expect(
        lambda: {name: by_time(points) for name, points in traces(driver, "freshness").items()},
        {
            "to events": dict(freshness),
            "to the rollups": {
                bucket: (6.75 if bucket == ten_minutes_ago else None) for bucket, _ in freshness
            },
        },
        "freshness trend",
    )
    slowest = query(
        db,
        """SELECT customer_id::text, max(max_delay_seconds), sum(rows_written)
           FROM clickstream_ingest_tenant_freshness WHERE customer_id IS NOT NULL
           GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5""",
    )
    assert slowest == [("7", 6.5, 9000), ("42", 5.5, 5000), ("13", 3.0, 4000)]
    # each one's slowest record to the rollups: only batch 1 is rolled up (its delay + 1.25 s)
    to_rollups = {"7": 5.0 + 1.25, "42": 5.5 + 1.25, "13": None}
    expect(
        lambda: slow_tenants_shown(driver),
        {c: (d, to_rollups[c], int(n)) for c, d, n in slowest},
        "slowest customers",
    )

    screenshot = tmp_path / "dashboard.png"
    assert driver.save_screenshot(str(screenshot))
    if target := os.environ.get("CLICKSTREAM_SCREENSHOT"):
        shutil.copyfile(screenshot, Path(PROJECT_DIR, target))


def test_one_customer_and_a_week_read_that_customers_rollups(dashboard):
    db, driver = dashboard.db, dashboard.driver
    driver.get(dashboard.url)
    wait_for(lambda: kpis_shown(driver)[0] > 0, lambda: True, "first render")
    choose(driver, customer="2")
    kpis = wait_for(
        lambda: kpis_shown(driver),
        lambda: sql_kpis(db, "rollup_customer_totals_5min", f"customer_id = 2 AND {SIX_HOURS}"),
        "customer 2's KPI tiles",
    )
    (raw,) = query(db, "SELECT count(*) FROM events WHERE customer_id = 2")
    assert kpis[0] == raw[0]
    top = query(
        db,
        f"""SELECT item, frequency FROM topn((SELECT topn_union_agg(top_devices_1000)
               FROM rollup_customer_totals_5min WHERE customer_id = 2 AND {SIX_HOURS}), 10)""",
    )
    devices = expect(lambda: table_shown(driver), {d: int(n) for d, n in top}, "top devices")
    expected = sorted(HEAVY, key=HEAVY.get, reverse=True)[:10]
    assert devices == {str(d): HEAVY[d] for d in expected}
    countries = dict(
        query(
            db,
            f"""SELECT country, sum(event_count)::int FROM rollup_events_5min
                WHERE customer_id = 2 AND {SIX_HOURS} GROUP BY 1""",
        )
    )
    expect(lambda: traces(driver, "by-country"), {"events": countries}, "customer 2 by country")

    choose(driver, range_key="7d")
    wait_for(
        lambda: kpis_shown(driver),
        lambda: sql_kpis(db, "rollup_customer_totals_1hr", f"customer_id = 2 AND {WEEK}"),
        "customer 2's week",
    )
    hours = query(
        db,
        f"""SELECT hour, event_count FROM rollup_customer_totals_1hr
            WHERE customer_id = 2 AND {WEEK}""",
    )
    expect(
        lambda: by_time(traces(driver, "trend")["events"]),
        {h: int(n) for h, n in hours},
        "customer 2's hourly trend",
    )


def test_a_new_batch_shows_up_without_reloading_the_page(dashboard):
    db, driver = dashboard.db, dashboard.driver
    driver.get(dashboard.url)
    before = wait_for(
        lambda: kpis_shown(driver),
        lambda: sql_kpis(db, "rollup_totals_5min", SIX_HOURS),
        "KPI tiles before",
    )
    now = datetime.now(UTC)
    added = copy_events(
        db, synthetic_events(random.Random(32), 3_000, now - timedelta(seconds=60), 50)
    )
    rollups(db)
    record_batch(db, 3, ago_s=1, rows=added, dead=3)
    after = wait_for(
        lambda: kpis_shown(driver),
        lambda: sql_kpis(db, "rollup_totals_5min", SIX_HOURS),
        "KPI tiles after the batch",
    )
    assert after[0] == before[0] + added
    (last,) = query(db, "SELECT committed_at FROM clickstream_ingest_batches WHERE batch_id = 3")
    expect(lambda: pipeline_shown(driver), (last[0], (added + 3) / 2, 7.5, 17 + 3), "new batch")


@contextlib.contextmanager
def logins_refused(db: ConnectionParams, login: ConnectionParams) -> Iterator[None]:
    """`login` may not connect (on Citus, to any node) until the block ends."""
    role = sql.Identifier(login.user or "")
    query(db, sql.SQL("ALTER ROLE {} NOLOGIN").format(role))
    try:
        yield
    finally:
        query(db, sql.SQL("ALTER ROLE {} LOGIN").format(role))


def test_the_page_recovers_when_its_database_connections_are_cut(dashboard):
    db, driver = dashboard.db, dashboard.driver
    driver.get(dashboard.url)
    expected = sql_kpis(db, "rollup_totals_5min", SIX_HOURS)
    expect(lambda: kpis_shown(driver), expected, "KPI tiles before")
    # New connections are refused until the page has said so: a cut alone failed one refresh,
    # one response the page need not render (Dash drops a response its next refresh overtakes)
    with logins_refused(db, dashboard.reader):
        (cut,) = query(
            db,
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE datname = current_database()
                 AND application_name = 'clickstream-dashboard'""",
        )
        assert cut[0] >= 1
        # once the panels in the render cache are too old to serve (`--cache-seconds`, 5)
        expect(
            lambda: driver.find_element(By.ID, "status").text.startswith("database unavailable"),
            True,
            "status line said so",
            wait_s=WAIT_S + 5,
        )
    # the next refresh reconnects
    expect(lambda: driver.find_element(By.ID, "status").text, "", "status line cleared")
    expect(lambda: kpis_shown(driver), expected, "KPI tiles after reconnecting")


def test_the_pool_never_holds_more_connections_than_its_size(db):
    pool = ConnectionPool(db, size=3)
    lock, busy, most, backends = threading.Lock(), [0], [0], set()

    def refresh(_: int) -> None:
        with pool.connection() as conn:
            with lock:
                busy[0] += 1
                most[0] = max(most[0], busy[0])
                backends.add(conn.info.backend_pid)
            with conn, conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(0.05)")
            with lock:
                busy[0] -= 1

    with ThreadPoolExecutor(12) as threads:
        list(threads.map(refresh, range(48)))  # 48 refreshes, 12 at once: all answered
    assert most[0] == 3 and len(backends) == 3, (most, backends)
