"""devkit.waits: a wait returns what its condition found, or fails naming what it waited for."""

from __future__ import annotations

import subprocess
import sys
from itertools import count

import pytest

from devkit.waits import WaitTimeout, wait_until


def test_a_wait_returns_the_first_truthy_answer():
    polls = count(1)
    assert wait_until(lambda: next(polls) >= 3 and "ready", 30, "three polls", every_s=0) == "ready"


def test_a_wait_past_its_deadline_fails_with_what_it_waited_for_and_the_last_answer():
    expected = r"waiting for the moon: not within 0\.05 s \(last: \[\]\)"
    with pytest.raises(WaitTimeout, match=expected):
        wait_until(lambda: [], 0.05, "the moon", every_s=0.01)


def test_a_wait_on_a_process_that_exits_fails_at_once_with_its_log(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("the job's last words\n")
    job = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    job.wait()
    with pytest.raises(WaitTimeout, match=r"exited with 3\n(.|\n)*the job's last words"):
        wait_until(lambda: False, 600, "a batch", process=job, log=log)
