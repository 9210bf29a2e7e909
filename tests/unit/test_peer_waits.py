"""The peer benchmark's wait: a pipeline that stops writing fails the run with its log,
instead of holding it until the hour-long timeout."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.peer_connect import Pipeline, wait_rows
from devkit.processes import log_tail


def stuck_pipeline(log: Path, rows: list[int]) -> Pipeline:
    return Pipeline(
        "stuck",
        "events",
        "topic",
        None,  # type: ignore[arg-type]  # never read by the wait
        lambda: subprocess.Popen([sys.executable, "-c", "pass"]),
        lambda: rows.pop(0) if len(rows) > 1 else rows[0],
        False,
        lambda: log_tail(log),
    )


def test_a_stalled_pipeline_fails_with_the_end_of_its_log(tmp_path: Path) -> None:
    log = tmp_path / "connect.log"
    log.write_text("start\nTask peer-0 is being killed\n")
    pipeline = stuck_pipeline(log, [0, 5, 7])  # moves twice, then not again
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match=r"7 of 10 rows .*\n(.|\n)*being killed"):
            wait_rows(pipeline, 10, process, "stuck", timeout_s=600, stalled_s=2)
    finally:
        process.kill()
    assert time.monotonic() - started < 10  # the stall, not the timeout


def test_a_pipeline_stuck_short_of_done_fails_though_its_count_is_reached(tmp_path: Path) -> None:
    # the peer's count includes re-sent rows: it can pass the target with rows still missing
    pipeline = stuck_pipeline(tmp_path / "none.log", [0, 5, 7])
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(RuntimeError, match=r"7 of 5 rows .*without one"):
            wait_rows(pipeline, 5, process, "stuck", 600, lambda: False, stalled_s=2)
    finally:
        process.kill()


def test_a_pipeline_that_keeps_writing_is_waited_for(tmp_path: Path) -> None:
    rows = list(range(0, 12))  # one more row each poll (0.5 s), well within the 2 s stall bound
    pipeline = stuck_pipeline(tmp_path / "none.log", rows)
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        wait_rows(pipeline, 10, process, "slow", timeout_s=600, stalled_s=2)
    finally:
        process.kill()
