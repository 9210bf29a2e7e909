"""Processes a test or benchmark started in a group of their own (`start_new_session=True`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path


def kill_group(proc: subprocess.Popen, missing_ok: bool = False) -> None:
    """SIGKILL the process and everything it started (a job's JVM and Python workers): a crash.
    With `missing_ok`, a group that has already exited is no error."""
    with contextlib.suppress(*((ProcessLookupError,) if missing_ok else ())):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def log_tail(log: Path, chars: int = 3000) -> str:
    """The end of a process's log, for an error message."""
    return log.read_text(errors="replace")[-chars:] if log.is_file() else f"(no log at {log})"
