"""One-off studies behind a design decision: run by name, not by `make bench` nor by the tests.

`.venv/bin/python -m benchmarks.studies.<name>` writes `benchmarks/studies/results/<name>.json`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from benchmarks.harness import ROOT

FIGURES = "FIGURES "  # the line a study's child process reports its figures on


def report_figures(figures: dict[str, Any]) -> None:
    """A child process's figures, as the one line `child_figures` reads."""
    print(FIGURES + json.dumps(figures), flush=True)


def child_figures(module: str, label: str, args: list[str]) -> dict[str, Any]:
    """Run `python -m benchmarks.<module> <args>` in a fresh process; its reported figures."""
    command = [sys.executable, "-m", f"benchmarks.{module}", *args]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(FIGURES)]
    if out.returncode or not lines:
        raise RuntimeError(f"{label}: exit {out.returncode}\n{out.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(lines[-1].removeprefix(FIGURES))
    return figures
