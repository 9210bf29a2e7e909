"""The soak's own arithmetic: when a rollup row is off, how memory growth is measured, and the
model it runs with (`make soak` runs the rest against the stack)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from benchmarks.soak import Sent, Server, _mismatched, model_file, outcomes, slopes
from clickstream_pipeline.core.model import load_model

# one dimension and a bucket, then a count, a distinct count and a TopN (never compared)
SPEC = SimpleNamespace(
    dimensions=("customer_id",),
    measures={
        "events": SimpleNamespace(kind="count"),
        "devices": SimpleNamespace(kind="distinct"),
        "top": SimpleNamespace(kind="topn"),
    },
)
EXACT = [(1, "10:00", 500, 400), (2, "10:00", 7, 7)]


def test_every_message_is_in_events_or_the_dead_letters_once_or_expired():
    sent = Sent(
        kinds={1: "now", 2: "late", 3: "too_old", 4: "malformed", 5: "late", 6: "now", 7: "now"},
        times={1: 100.0, 2: 50.0, 3: 10.0, 4: 100.0, 5: 90.0, 6: 100.0, 7: 100.0},
    )
    sent.kinds[8], sent.times[8] = "too_old", 10.0  # never a row: a dead letter gone missing
    stored = {1: 1, 7: 2}  # 7 written twice
    letters = {3: 1, 4: 1, 6: 1}
    kept_from = 60.0  # 2's partition dropped, 5's kept
    assert outcomes(sent, stored, letters, kept_from) == {
        "in events": 1,
        "expired": 1,
        "dead letter (too_old)": 1,
        "dead letter (malformed)": 1,
        "dead letter (now)": 1,
        "lost": 2,
        "duplicated": 1,
    }
    assert outcomes(sent, {**stored, 6: 1}, letters, kept_from)["duplicated"] == 2


def test_counts_are_exact_and_distinct_counts_within_hll_error():
    assert _mismatched(EXACT, [(1, "10:00", 500, 410), (2, "10:00", 7, 9)], SPEC) == 0
    assert _mismatched(EXACT, [(1, "10:00", 499, 400), (2, "10:00", 7, 7)], SPEC) == 1
    assert _mismatched(EXACT, [(1, "10:00", 500, 413), (2, "10:00", 7, 7)], SPEC) == 1
    assert _mismatched(EXACT, [(1, "10:00", 500, 400), (2, "10:00", 7, None)], SPEC) == 1


def test_a_missing_or_extra_rollup_row_is_off():
    assert _mismatched(EXACT, [(1, "10:00", 500, 400)], SPEC) == 1
    extra = [*EXACT, (3, "10:00", 1, 1)]
    assert _mismatched(EXACT, extra, SPEC) == 1


def test_memory_slope_is_per_run_after_its_warm_up_and_the_steepest_wins():
    server = Server("postgres", None, None, None, "q", Path("log"))  # type: ignore[arg-type]
    # run 1: flat JVM, Python +60 MiB an hour; run 2: JVM +120 MiB an hour; run 3: too short
    server.memory = [(t, 1, 900.0, 500 + t / 60) for t in range(0, 1200, 10)]
    server.memory += [(t, 2, 900 + (t - 1200) / 30, 500.0) for t in range(1200, 2400, 10)]
    server.memory[120:130] = [(t, 2, 2000.0, 500.0) for t in range(1200, 1300, 10)]  # warm-up
    server.memory += [(t, 3, 5000.0 + t, 5000.0 + t) for t in range(2400, 2500, 10)]
    found = slopes(server)
    assert round(found["jvm_mib_per_h"] or 0) == 120
    assert round(found["python_mib_per_h"] or 0) == 60


def test_the_soak_runs_the_lab_model_with_short_horizons(tmp_path):
    model = load_model(str(model_file(tmp_path)))
    lab = load_model("lab")
    assert model.time.max_past == "10m"
    assert (model.retention.events, model.retention.bookkeeping) == ("70m", "1m")
    assert model.rollups == lab.rollups and model.fields == lab.fields
