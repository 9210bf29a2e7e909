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


def test_a_small_first_batch_warms_up_for_what_its_rows_do_not_explain() -> None:
    ingest = {
        "wall_seconds": 9.0,
        "session_s": 1.6,
        "batch_seconds": [1.5, 1.0, 1.0, 1.0],
        "batch_rows_per_s": [10_000, 50_000, 50_000, 50_000],
    }
    parts = breakdown(ingest, 165_000)
    # 150,000 rows in 3 s after the first batch; its 15,000 rows take 0.3 s of its 1.5 at that rate
    assert parts["steady_rows_per_s"] == pytest.approx(50_000)
    assert parts["warm_up_s"] == pytest.approx(1.2)
