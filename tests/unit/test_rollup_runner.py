"""Background rollups: one run at a time, requests during a run coalesced into one more."""

from __future__ import annotations

import threading
import time

from clickstream_pipeline.warehouse.rollup_runner import RollupRunner, drain, runner_for


def test_requests_during_a_run_coalesce_into_one_more_run():
    running, release = threading.Event(), threading.Event()
    active, overlaps, runs = [0], [0], []

    def run() -> None:
        active[0] += 1
        overlaps[0] = max(overlaps[0], active[0])
        runs.append(time.monotonic())
        running.set()
        release.wait(5)
        active[0] -= 1

    runner = RollupRunner("q", run)
    runner.request()
    assert running.wait(5)
    for _ in range(5):  # five batches commit while the first run is busy
        runner.request()
    release.set()
    assert runner.wait_idle(5)
    assert len(runs) == 2 and runner.runs == 2
    assert overlaps[0] == 1


def test_a_failed_run_is_kept_and_the_next_request_runs_again():
    calls = []

    def run() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database away")

    runner = RollupRunner("q", run)
    runner.request()
    assert runner.wait_idle(5)
    assert isinstance(runner.last_error, RuntimeError) and runner.runs == 0
    runner.request()
    assert runner.wait_idle(5)
    assert runner.last_error is None and runner.runs == 1 and len(calls) == 2


def test_drain_waits_for_the_run_a_last_batch_asked_for_and_is_bounded():
    release, finished = threading.Event(), []

    def run() -> None:
        release.wait(10)
        finished.append(1)

    runner = runner_for("q-drain", run)
    runner.request()  # the last batch's request, still running when the query ends
    assert not drain("q-drain", 0.2)  # bounded: the deadline passes while the run is held
    release.set()
    assert drain("q-drain", 10)
    assert finished == [1]
    assert drain("no-such-query", 0)  # a job that never asked for rollups returns at once
