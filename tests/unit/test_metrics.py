"""The progress listener: its line format, and one line per batch from a real local query."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from clickstream_pipeline.ingest.metrics import format_progress, register_progress_logger

KAFKA_PROGRESS = {
    "id": "8c1f6c2e-0000-4000-8000-000000000001",
    "name": "clickstream-ingest",
    "batchId": 7,
    "numInputRows": 1200,
    "inputRowsPerSecond": 480.0,
    "processedRowsPerSecond": 510.6,
    "durationMs": {"addBatch": 2100, "triggerExecution": 2350},
    "sources": [
        {
            "description": "KafkaV2[Subscribe[clickstream]]",
            "startOffset": {"clickstream": {"1": 50, "0": 100}},
            "endOffset": {"clickstream": {"0": 400, "1": 950, "10": 3}},
            "numInputRows": 1200,
        }
    ],
}


def test_a_kafka_batch_is_one_line_with_rows_rate_duration_and_offset_ranges():
    assert format_progress(KAFKA_PROGRESS) == (
        "query clickstream-ingest batch 7: 1200 rows in 2.35s (511 rows/s); "
        "offsets clickstream/0 100->400 clickstream/1 50->950 clickstream/10 ->3"
    )


def test_a_first_batch_without_name_start_offsets_or_rate_still_formats():
    progress = {
        "id": "q-1",
        "batchId": 0,
        "numInputRows": 0,
        "durationMs": {"triggerExecution": 12},
        "sources": [{"startOffset": None, "endOffset": {"logOffset": 0}}],
    }
    assert format_progress(progress) == (
        'query q-1 batch 0: 0 rows in 0.01s (0 rows/s); offsets - -> {"logOffset":0}'
    )


def test_the_listener_logs_one_line_per_batch_of_a_real_query(spark, tmp_path: Path, caplog):
    source = tmp_path / "in"
    source.mkdir()
    for i, rows in enumerate((3, 5, 2)):
        lines = [json.dumps({"n": n}) for n in range(rows)]
        path = source / f"part-{i}.json"
        path.write_text("\n".join(lines) + "\n")
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))  # the file source's order
    listener = register_progress_logger(spark)
    caplog.set_level(logging.INFO, logger="clickstream_pipeline.ingest.metrics")
    try:
        query = (
            spark.readStream.schema("n INT")
            .option("maxFilesPerTrigger", 1)
            .json(str(source))
            .writeStream.foreachBatch(lambda df, batch_id: df.count())  # reads the rows
            .option("checkpointLocation", str(tmp_path / "checkpoint"))
            .queryName("metrics_test")
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination(60)
        deadline = time.monotonic() + 15  # listener events arrive asynchronously
        while time.monotonic() < deadline and not any("stopped" in m for m in caplog.messages):
            time.sleep(0.2)
    finally:
        spark.streams.removeListener(listener)
    batches = [m for m in caplog.messages if m.startswith("query metrics_test batch ")]
    assert [m.split(":")[0] for m in batches] == [f"query metrics_test batch {i}" for i in range(3)]
    assert [int(m.split(": ")[1].split()[0]) for m in batches] == [3, 5, 2]
    assert [m.split("; offsets ")[1] for m in batches] == [
        '- -> {"logOffset":0}',
        '{"logOffset":0} -> {"logOffset":1}',
        '{"logOffset":1} -> {"logOffset":2}',
    ]
    assert any(m.startswith("query metrics_test started") for m in caplog.messages)


@pytest.mark.parametrize("missing", ["durationMs", "sources", "processedRowsPerSecond"])
def test_missing_fields_do_not_break_the_line(missing: str):
    progress = {k: v for k, v in KAFKA_PROGRESS.items() if k != missing}
    assert format_progress(progress).startswith("query clickstream-ingest batch 7: 1200 rows")
