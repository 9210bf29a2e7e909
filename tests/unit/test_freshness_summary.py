"""The freshness benchmark keeps a summary of its per-event delays, never the samples."""

from benchmarks.freshness import delays
from benchmarks.harness import percentile


def test_delays_are_summarised_as_101_quantiles_for_the_chart() -> None:
    events = 5_000
    # event i sent at t=i/1000, written 0.5-1.5 s later, counted in the rollup 0.2 s after that
    rows = [(i, i / 1000, i / 1000 + 0.5 + (i % 100) / 100, i / 1000 + 1 + (i % 100) / 100)
            for i in range(events)]  # fmt: skip
    # the rollup's changes: (when seen, last_aggregated_id)
    rollup = [(i / 1000 + 1.2 + (i % 100) / 100, i) for i in range(events)]
    result = delays(rows, 0.0, events / 1000, rollup)

    lists = {key: len(v) for key, v in result.items() if isinstance(v, list)}
    assert lists == {"visible_delay_quantiles_s": 101, "rollup_delay_quantiles_s": 101}
    visible = [r[3] - r[1] for r in rows]
    quantiles = result["visible_delay_quantiles_s"]
    assert quantiles == sorted(quantiles)
    assert quantiles[0] == min(visible) and quantiles[100] == max(visible)
    assert quantiles[50] == result["visible_in_events_batch_commit"]["p50_s"]
    assert quantiles[95] == result["visible_in_events_batch_commit"]["p95_s"]
    assert quantiles[95] == percentile(visible, 95)
