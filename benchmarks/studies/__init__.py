"""One-off studies behind a design decision, on the benchmarks' harness but in neither `make
bench` nor the tests: `python -m benchmarks.studies.<name> [--quick]` writes
`benchmarks/studies/results/<name>.json`. A design each in a fresh process, interleaved."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from benchmarks.harness import ROOT, Scenario, say

FIGURES = "FIGURES "  # the line a study's child process reports its figures on


def main(scenario: Scenario, child: Callable[..., dict[str, Any]]) -> None:
    """A study's entry point; `child <design> <args>` runs one design and reports its figures."""
    if sys.argv[1:2] == ["child"]:
        print(FIGURES + json.dumps(child(*sys.argv[2:])), flush=True)
    else:
        scenario.main()


def interleaved(module: str, designs: list[str], repeat: int, *args: Any) -> dict[str, Any]:
    """Each design in a fresh `child` process in turn, `repeat` rounds: figures and medians."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in designs}
    for i in range(repeat):
        for name in designs:
            command = [sys.executable, "-m", f"benchmarks.studies.{module}", "child", name]
            command += [str(a) for a in args]
            out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith(FIGURES)]
            if out.returncode or not lines:
                raise RuntimeError(f"{name}: exit {out.returncode}\n{out.stderr[-3000:]}")
            runs[name].append(json.loads(lines[-1].removeprefix(FIGURES)))
            say(f"run {i + 1}/{repeat} {name}: {runs[name][-1]}")
    numbers = [k for k, v in runs[designs[0]][0].items() if isinstance(v, int | float)]
    medians = {
        name: {k: round(statistics.median(r[k] for r in rs), 3) for k in numbers}
        for name, rs in runs.items()
    }
    return {"repeat": repeat, "medians": medians, "runs": runs}
