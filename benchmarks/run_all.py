"""Run every benchmark, one process each (`on_both` ones on Citus too), then write the reports:
`python -m benchmarks.run_all [--quick] [--only sink,freshness]` (`make bench`); a failed one
is reported, the others still run, and the exit code is then 1."""

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
    started, status = time.perf_counter(), {}
    for name in (n for n in ORDER if not args.only or n in args.only.split(",")):
        both = harness.scenario(name).on_both and not CITUS_UNAVAILABLE.is_file()
        for env in ("local", "local-citus") if both else ("local",):
            key, t0 = name + harness.ENVS[env], time.perf_counter()
            command = [sys.executable, "-m", f"benchmarks.{name}", "--env", env]
            say(f"=== {key}: {' '.join(command[1:])}")
            command += ["--quick"] if args.quick else []
            code = subprocess.run(command, cwd=ROOT).returncode
            status[key] = {"exit_code": code, "seconds": round(time.perf_counter() - t0, 1)}
            say(f"=== {key}: {'ok' if code == 0 else f'FAILED ({code})'} {status[key]}")
    harness.report()
    say(f"all done in {time.perf_counter() - started:.0f}s: {status}")
    return 1 if any(s["exit_code"] for s in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
