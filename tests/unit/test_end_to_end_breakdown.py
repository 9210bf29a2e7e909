"""The end-to-end benchmark's breakdown: the Spark session is part of the job's time."""

import pytest

from benchmarks.end_to_end import breakdown


def test_the_session_build_is_a_part_of_the_wall_time() -> None:
    ingest = {
        "wall_seconds": 12.7,  # job start (before the session is built) to the last commit
        "session_s": 3.4,
        "batch_seconds": [2.5, 1.0, 1.0, 1.0],
        "batch_rows_per_s": [20_000, 50_000, 50_000, 50_000],
        "start_to_first_trigger_s": 1.6,
    }
    parts = breakdown(ingest, 200_000)
    assert parts["session_s"] == 3.4
    assert parts["first_batch_s"] + parts["other_batches_s"] == 5.5
    assert parts["outside_batches_s"] == pytest.approx(12.7 - 3.4 - 5.5)
    total = (
        parts["session_s"]
        + parts["first_batch_s"]
        + parts["other_batches_s"]
        + parts["outside_batches_s"]
    )
    assert total == pytest.approx(ingest["wall_seconds"])
