"""The dashboard's render cache: viewers of one view share one database read per period, and
only the viewer making it waits for a reload."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from clickstream_pipeline.dashboard.app import OUTPUTS, rendering
from clickstream_pipeline.dashboard.panels import Kpis, PipelineStatus, Ranked, Snapshot, View

VIEWS = [View(), View(customer_id=7)]


def counting_load(calls: Counter, seconds: float = 0.2):
    """A load that takes `seconds` (as a database read does) and counts its calls per view."""
    lock = threading.Lock()

    def load(view: View) -> Snapshot:
        with lock:
            calls[view] += 1
        time.sleep(seconds)
        pipeline = PipelineStatus(0, 0, 0, None, None, None, None, None)
        kpis = Kpis(calls[view], 1, 1)
        top = [Ranked("7", 3)]
        return Snapshot(view, datetime.now(UTC), kpis, [], [], None, top, pipeline, [], [])

    return load


def test_concurrent_viewers_of_a_view_share_one_read_until_it_is_older_than_the_cache():
    calls: Counter = Counter()
    rendered = rendering(counting_load(calls), cache_seconds=0.5)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(rendered, VIEWS * 8))
    assert calls == {VIEWS[0]: 1, VIEWS[1]: 1}  # not 8 each: the others waited for the first
    assert all(len(a) == len(OUTPUTS) for a in answers)
    time.sleep(0.6)
    rendered(VIEWS[0])
    assert calls[VIEWS[0]] == 2


def test_once_a_value_is_old_it_reloads_behind_the_callers_who_get_the_old_one_meanwhile():
    calls: Counter = Counter()
    rendered = rendering(counting_load(calls, 0.3), cache_seconds=0.2)
    first = rendered(VIEWS[0])
    time.sleep(0.25)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        meanwhile = list(pool.map(rendered, [VIEWS[0]] * 8))
    assert time.monotonic() - started < 0.2  # nobody waited for the 0.3 s reload
    assert [m[0].children for m in [first, *meanwhile]] == ["1"] * 9  # the events tile: loads
    time.sleep(0.4)
    assert rendered(VIEWS[0])[0].children == "2" and calls[VIEWS[0]] == 2


def test_a_failed_load_raises_for_one_caller_and_the_next_one_loads_again():
    failing = {2}  # the first load works, the second (a reload behind) and nothing else fails
    attempts: list[int] = []

    def load(view: View) -> Snapshot:
        attempts.append(1)
        if len(attempts) in failing:
            raise ConnectionError("database gone")
        return counting_load(Counter(), 0)(view)

    rendered = rendering(load, cache_seconds=0.1)
    rendered(VIEWS[0])
    time.sleep(0.15)
    assert len(rendered(VIEWS[0])) == len(OUTPUTS)  # the old value; the reload fails behind it
    time.sleep(0.1)
    with pytest.raises(ConnectionError):
        rendered(VIEWS[0])  # what the failed reload met, once
    assert len(rendered(VIEWS[0])) == len(OUTPUTS) and len(attempts) == 3


def test_without_a_cache_every_refresh_reads():
    calls: Counter = Counter()
    rendered = rendering(counting_load(calls, 0.01), cache_seconds=0)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(rendered, VIEWS * 4))
    assert calls == {VIEWS[0]: 4, VIEWS[1]: 4}
