"""The benchmarks' process figures: a tree's CPU seconds and its peak resident memory."""

import subprocess
import sys
import time

import pytest

from benchmarks.common import PeakMemory, tree_cpu_s

MIB = 1 << 20
# a parent that starts a marked child holding 200 MiB, then outlives it as a zombie (not reaped)
TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import time; block = bytearray(200 << 20); block[::4096] = b'x' * len(block[::4096]);"
    " time.sleep(2)", "marked-worker"])
time.sleep(6)
"""


def test_peak_memory_sees_the_marked_descendants_and_survives_a_zombie() -> None:
    parent = subprocess.Popen([sys.executable, "-c", TREE])
    try:
        with PeakMemory(parent.pid, marked="marked-worker", interval_s=0.1) as memory:
            time.sleep(4)  # the child's 2 s, then a zombie sampled for 2 s
    finally:
        parent.kill()
        parent.wait()
    assert memory.root_peak_mib < 100  # the parent's own interpreter
    assert list(memory.marked_peak_mib) and len(memory.marked_peak_mib) == 1
    (worker,) = memory.marked_peak_mib.values()
    assert 200 <= worker < 260
    assert memory.marked_total_peak_mib == pytest.approx(worker)
    assert memory.tree_peak_mib >= memory.root_peak_mib + worker - 1


def test_tree_cpu_counts_a_child_after_it_is_reaped() -> None:
    burn = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
    script = (
        "import subprocess, sys, time\ntime.sleep(1)\n"
        f"subprocess.run([sys.executable, '-c', {burn!r}])\ntime.sleep(30)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        before = tree_cpu_s(parent.pid)  # before the child starts
        time.sleep(3.5)  # the child burns 0.4 s and its parent reaps it
        after = tree_cpu_s(parent.pid)
    finally:
        parent.kill()
        parent.wait()
    assert 0.4 <= after - before < 1.5
