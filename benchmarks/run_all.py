"""Run every benchmark, one process each, then write the reports from results.json.

`.venv/bin/python -m benchmarks.run_all [--quick] [--only sink,freshness]` (or `make bench`):
each scenario of `harness.ORDER` in turn, stored in `benchmarks/results/results.json`; the
`on_both` ones run a second time against the Citus cluster (`--env local-citus`) when the stack
has one; then `results.md`, the README's table and `results.png` (`harness.report`).
A failed benchmark is reported and the others still run; the exit code is 1 if any failed.
Full size takes about 20-30 minutes on 2 cores; `--quick` is a smoke run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks import harness
from benchmarks.harness import ORDER, ROOT, say
from devkit.db import CITUS_UNAVAILABLE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark's quick mode")
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(ORDER))
    args = parser.parse_args(argv)
    chosen = [n for n in ORDER if not args.only or n in args.only.split(",")]
    started, status = time.perf_counter(), {}
    for name in chosen:
        both = harness.scenario(name).on_both and not CITUS_UNAVAILABLE.is_file()
        for env in ("local", "local-citus") if both else ("local",):
            key, t0 = name + harness.ENVS[env], time.perf_counter()
            command = [sys.executable, "-m", f"benchmarks.{name}", "--env", env]
            say(f"=== {key}: {' '.join(command[1:])}")
            code = subprocess.run(
                command + (["--quick"] if args.quick else []), cwd=ROOT
            ).returncode
            status[key] = {"exit_code": code, "seconds": round(time.perf_counter() - t0, 1)}
            say(f"=== {key}: {'ok' if code == 0 else f'FAILED ({code})'} {status[key]}")
    harness.report()
    say(f"all done in {time.perf_counter() - started:.0f}s: {status}")
    return 1 if any(s["exit_code"] for s in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
