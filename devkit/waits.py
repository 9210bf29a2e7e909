"""Waiting for something to happen: a condition polled until a deadline, never a bare sleep."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from devkit.processes import log_tail

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A wait's deadline passed (an AssertionError, so pytest reports it as a test failure)."""


def wait_until(
    condition: Callable[[], T],
    timeout_s: float,
    what: str,
    *,
    every_s: float = 0.1,
    process: subprocess.Popen | None = None,
    log: Path | None = None,
) -> T:
    """Poll `condition` every `every_s` until it returns something truthy, and return that.
    Raises WaitTimeout naming `what` after `timeout_s`, or at once when `process` exits
    meanwhile (with the end of `log`, when given)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if process is not None and process.poll() is not None:
            raise WaitTimeout(
                f"waiting for {what}: the process exited with {process.returncode}" + _log_end(log)
            )
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"waiting for {what}: not within {timeout_s:g} s (last: {result!r})" + _log_end(log)
            )
        time.sleep(every_s)


def _log_end(log: Path | None) -> str:
    return "" if log is None else f"\n{log_tail(log)}"
