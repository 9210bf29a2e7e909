"""The dashboard's render cache: viewers of one view share one database read per period, and
only the viewer making it waits for a reload."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime

import pytest

from clickstream_pipeline.dashboard.app import OUTPUTS, render, rendering
from clickstream_pipeline.dashboard.cache import StaleWhileReloading
from clickstream_pipeline.dashboard.panels import Kpis, PipelineStatus, Ranked, Snapshot, View
from devkit.waits import wait_until

VIEWS = [View(), View(customer_id=7)]
DEADLINE_S = 10  # for what a working cache does at once: only a broken one waits this long


class Clock:
    """A clock the test moves: the cache's ages depend on nothing else."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_load(calls: Counter, hold=lambda view, call: None):
    """A load that counts its calls per view; `hold(view, call)` stands for the database read
    (it may block). The events tile shows the call's number."""
    lock = threading.Lock()

    def load(view: View) -> Snapshot:
        with lock:
            calls[view] += 1
            call = calls[view]
        hold(view, call)
        pipeline = PipelineStatus(0, 0, 0, None, None, None, None, None)
        kpis = Kpis(call, 1, 1)
        top = [Ranked("7", 3)]
        return Snapshot(view, datetime.now(UTC), kpis, [], [], None, top, pipeline, [], [])

    return load


def render_cache(load, max_age_s: float, clock: Clock, reloads: ThreadPoolExecutor):
    """The dashboard's render cache (as `rendering` builds it) on the test's clock, its reloads
    behind on `reloads` (shut down to wait for them)."""
    return StaleWhileReloading(
        lambda view: render(load(view)), max_age_s, clock=clock, executor=reloads
    )


def events_tile(answer: list) -> str:
    return answer[0].children


def test_concurrent_viewers_of_a_view_share_one_read_until_it_is_older_than_the_cache():
    calls: Counter = Counter()
    arrived: list[View] = []

    def every_viewer_arrived(view: View, call: int) -> None:  # so the others come mid-read
        wait_until(lambda: len(arrived) == 16, DEADLINE_S, "every viewer's request")

    clock, reloads = Clock(), ThreadPoolExecutor(1)
    rendered = render_cache(counting_load(calls, every_viewer_arrived), 0.5, clock, reloads)

    def viewer(view: View) -> list:
        arrived.append(view)
        return rendered(view)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(viewer, VIEWS * 8))
    assert calls == {VIEWS[0]: 1, VIEWS[1]: 1}  # not 8 each: the others waited for the first
    assert all(len(a) == len(OUTPUTS) for a in answers)
    clock.now += 0.49
    assert events_tile(rendered(VIEWS[0])) == "1" and calls[VIEWS[0]] == 1  # still fresh
    clock.now += 0.01
    assert events_tile(rendered(VIEWS[0])) == "1"  # the old one, while it reloads behind
    reloads.shutdown(wait=True)
    assert calls[VIEWS[0]] == 2 and events_tile(rendered(VIEWS[0])) == "2"


def test_once_a_value_is_old_it_reloads_behind_the_callers_who_get_the_old_one_meanwhile():
    calls: Counter = Counter()
    reload_may_end = threading.Event()

    def slow_reload(view: View, call: int) -> None:
        if call > 1:
            assert reload_may_end.wait(DEADLINE_S * 3), "the test never let the reload end"

    clock, reloads = Clock(), ThreadPoolExecutor(1)
    rendered = render_cache(counting_load(calls, slow_reload), 0.2, clock, reloads)
    first = rendered(VIEWS[0])
    clock.now += 0.25
    with ThreadPoolExecutor(8) as pool:
        meanwhile = [pool.submit(rendered, VIEWS[0]) for _ in range(8)]
        _, waiting = wait(meanwhile, timeout=DEADLINE_S)
        assert not waiting, "a caller waited for the reload"
        reload_may_end.set()
    answers = [first, *(m.result() for m in meanwhile)]
    assert [events_tile(a) for a in answers] == ["1"] * 9  # the events tile: loads so far
    reloads.shutdown(wait=True)
    assert events_tile(rendered(VIEWS[0])) == "2" and calls[VIEWS[0]] == 2  # one reload


def test_a_failed_load_raises_for_one_caller_and_the_next_one_loads_again():
    failing = {2}  # the first load works, the second (a reload behind) and nothing else fails
    attempts: list[int] = []

    def load(view: View) -> Snapshot:
        attempts.append(1)
        if len(attempts) in failing:
            raise ConnectionError("database gone")
        return counting_load(Counter())(view)

    clock, reloads = Clock(), ThreadPoolExecutor(1)
    rendered = render_cache(load, 0.1, clock, reloads)
    rendered(VIEWS[0])
    clock.now += 0.1
    assert len(rendered(VIEWS[0])) == len(OUTPUTS)  # the old value; the reload fails behind it
    reloads.shutdown(wait=True)
    with pytest.raises(ConnectionError):
        rendered(VIEWS[0])  # what the failed reload met, once
    assert len(rendered(VIEWS[0])) == len(OUTPUTS) and len(attempts) == 3


def test_without_a_cache_every_refresh_reads():
    calls: Counter = Counter()
    rendered = rendering(counting_load(calls), cache_seconds=0)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(rendered, VIEWS * 4))
    assert calls == {VIEWS[0]: 4, VIEWS[1]: 4}
