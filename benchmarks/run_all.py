"""Run every benchmark, one process each, then write the combined results.

`.venv/bin/python -m benchmarks.run_all [--quick] [--only sink,freshness]` (or `make bench`):
producer, sink, stages, end_to_end, freshness, dashboard, viewers, peer_connect, rollups,
bootstrap in turn, each writing `benchmarks/results/<name>.json`;
sink, stages, end_to_end, freshness and dashboard run a second time against the Citus cluster
(`--env local-citus`, `<name>_citus.json`) when the stack has one; then `results.json`,
`results.md` and `results.png`.
A failed benchmark is reported and the others still run; the exit code is 1 if any failed.
Full size takes about 20-30 minutes on 2 cores (the 10M-event dashboard database is built once
and reused); `--quick` is a smoke run of under 2 minutes per benchmark.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time

from benchmarks import report
from benchmarks.common import RESULTS, ROOT, machine_facts, say, write_result
from benchmarks.report import ON_BOTH
from devkit.db import CITUS_UNAVAILABLE

ORDER = report.PARTS
PRODUCER_LINES = {
    "raw_msg_per_s": r"raw confluent-kafka \(baseline\):\s+([\d,]+) msg/s",
    "same_messages_msg_per_s": r"clickstream-produce, same msgs:\s+([\d,]+) msg/s",
    "storefront_msg_per_s": r"clickstream-produce, storefront:\s+([\d,]+) msg/s",
    "lab_uniform_msg_per_s": r"clickstream-produce, lab-uniform:\s+([\d,]+) msg/s",
}


def run(module: str, args: list[str]) -> tuple[int, str]:
    """Run `python -m benchmarks.<module>`, streaming its output (Spark's WARN lines dropped)."""
    command = [sys.executable, "-m", f"benchmarks.{module}", *args]
    say(f"=== {module}: {' '.join(command[1:])}")
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    kept = []
    for line in proc.stdout:
        if " WARN " in line or line.startswith(("\tat ", "SLF4J", "Using Spark", "To adjust")):
            continue
        print(line, end="", flush=True)
        kept.append(line)
    return proc.wait(), "".join(kept)


def producer(quick: bool) -> int:
    messages = 50_000 if quick else 400_000
    code, out = run("producer", ["--messages", str(messages)])
    if code == 0:
        figures: dict[str, object] = {"machine": machine_facts(), "messages": messages}
        for key, pattern in PRODUCER_LINES.items():
            match = re.search(pattern, out)
            if match is None:
                say(f"producer: no figure {key} in its output")
                return 1
            figures[key] = float(match.group(1).replace(",", ""))
        write_result("producer", figures)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(ORDER))
    args = parser.parse_args(argv)
    chosen = [n for n in ORDER if not args.only or n in args.only.split(",")]
    citus = not CITUS_UNAVAILABLE.is_file()
    if not citus:
        say(f"no Citus cluster ({CITUS_UNAVAILABLE.read_text().strip()}): plain PostgreSQL only")
    started = time.perf_counter()
    status = {}
    quick = ["--quick"] if args.quick else []
    for name in chosen:
        envs = ["local", "local-citus"] if citus and name in ON_BOTH else ["local"]
        for env in envs:
            key = name if env == "local" else f"{name}_citus"
            t0 = time.perf_counter()
            if name == "producer":
                code = producer(args.quick)
            elif name == "bootstrap":  # quick already: three new databases per server
                code, _ = run(name, [])
            else:
                code, _ = run(name, [*quick, *(["--env", env] if name in ON_BOTH else [])])
            status[key] = {"exit_code": code, "seconds": round(time.perf_counter() - t0, 1)}
            outcome = "ok" if code == 0 else f"FAILED ({code})"
            say(f"=== {key}: {outcome} in {status[key]['seconds']}s")
    (RESULTS / "run_status.json").write_text(json.dumps(status, indent=2) + "\n")
    report.main()
    say(f"all done in {time.perf_counter() - started:.0f}s: {json.dumps(status)}")
    return 1 if any(s["exit_code"] for s in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
