"""Job scripts one after another in one Spark application, for `test_spark_cluster`:

    spark-submit ... tests/integration/one_application.py \
        jobs/ingest.py --env local --available-now --then jobs/smoke.py --env local

Each script's own `main(argv)` runs in turn in this driver: the first builds the session as
under its own spark-submit, the later ones get that running session (`build_spark`) and its
executors, warm, instead of an application's start each. Exits with the first job's nonzero
exit code, the later ones not run."""

from __future__ import annotations

import runpy
import sys

THEN = "--then"


def commands(argv: list[str]) -> list[list[str]]:
    """The job scripts with their flags, as split at each `--then`."""
    found: list[list[str]] = [[]]
    for arg in argv:
        if arg == THEN:
            found.append([])
        else:
            found[-1].append(arg)
    if not all(found):
        raise SystemExit(f"usage: {sys.argv[0]} SCRIPT [FLAG...] [{THEN} SCRIPT [FLAG...]]...")
    return found


def main(argv: list[str]) -> int:
    for script, *flags in commands(argv):
        print(f"one_application: {script} {' '.join(flags)}", file=sys.stderr, flush=True)
        code = int(runpy.run_path(script)["main"](flags) or 0)
        sys.stdout.flush()
        if code != 0:
            print(f"one_application: {script} exited with {code}", file=sys.stderr, flush=True)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
