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


def process_tree(root: int) -> dict[int, bytes]:
    """`root` and every process under it, each with its command line (NUL-separated, from
    /proc): what any local user can read of them."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree.update(children)
        frontier = children
    lines = {}
    for pid in tree:
        with contextlib.suppress(OSError):
            lines[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
    return lines


def showing_any(tree: dict[int, bytes], values: list[str]) -> dict[int, str]:
    """The processes of `tree` whose command line holds one of `values` (named by position, so
    a failure shows no value)."""
    return {
        pid: ", ".join(f"value #{i}" for i, v in enumerate(values) if v.encode() in line)
        for pid, line in tree.items()
        if any(v.encode() in line for v in values)
    }
