"""The spark-submit commands of the README and of the docs' spark-submit page, run as written,
ingest events end to end."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.warehouse.database import ConnectionParams
from tests.conftest import PROJECT_DIR, TEST_JAVA_OPTIONS
from tests.integration.conftest import checkout_build
from tests.integration.ingest_support import assert_exactly_once, new_topic, produce_mix

MARKED_BLOCK = re.compile(r"<!-- spark-submit -->\n```bash\n(.*?)```", re.DOTALL)


# the README's ingest command, then the page's other jobs, in that order
MARKED_FILES = ("README.md", "docs/how-to/spark-submit.md")


def readme_blocks() -> list[str]:
    return [
        block
        for name in MARKED_FILES
        for block in MARKED_BLOCK.findall((PROJECT_DIR / name).read_text(encoding="utf-8"))
    ]


def test_the_readme_marks_its_spark_submit_blocks():
    blocks = readme_blocks()
    assert len(blocks) == 2
    assert "jobs/ingest.py" in blocks[0]
    commands = "\n".join(blocks)
    for job in ("ingest", "bootstrap", "dead_letters", "query"):
        assert re.search(rf"spark-submit .*(\\\n.*)*jobs/{job}\.py", commands), job


def test_the_readme_spark_submit_commands_ingest_end_to_end(
    local_config, local_secrets, run_root: Path, tmp_path: Path
):
    conf = producer_config(local_config.kafka, local_secrets)
    topic = new_topic(conf, partitions=2)
    sent = produce_mix(conf, topic, 3_000, seed=21, malformed_share=0.02)
    query_name = f"submit-{uuid.uuid4().hex[:10]}"
    environ = {
        **os.environ,
        "CLICKSTREAM__KAFKA__TOPICS": f'["{topic}"]',
        "CLICKSTREAM__INGEST__QUERY_NAME": query_name,
        # a fresh dead-letter table: the shared one's Delta log grows with every test run
        "CLICKSTREAM__STORAGE__LAKE_ROOT": str(tmp_path / "lake"),
        # the drivers' JVMs with the JIT options of the tests' local sessions
        "SPARK_SUBMIT_OPTS": TEST_JAVA_OPTIONS,
    }
    output = ""
    for block in readme_blocks():
        started = time.monotonic()
        with checkout_build(run_root):  # the README's block runs `make wheel`
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", block],
                cwd=PROJECT_DIR,
                env=environ,
                capture_output=True,
                text=True,
                timeout=400,
                check=False,
            )
        output += done.stdout + done.stderr
        print(f"block {block.splitlines()[-1][:60]!r}: {time.monotonic() - started:.0f}s")
        assert done.returncode == 0, f"{block}\nfailed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"

    assert_exactly_once(ConnectionParams.from_jdbc_url(local_secrets["database"]), sent)
    assert re.search(rf"query {query_name} batch 0: {sent.total} rows in ", output)
    assert "bootstrap done: 0 applied" in output
    listed = output.split(f"dead letters of {query_name} in ")[1]
    counts = [int(n) for n in re.findall(r"^ *(\d+)  \S", listed, re.MULTILINE)]
    assert sum(counts) == len(sent.invalid)
    assert "-- events_last_week (" in output
