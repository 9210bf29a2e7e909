"""results.md, the README's performance table and the docs' tables come from results.json."""

import json

import pytest

from benchmarks import harness

DOCS = harness.ROOT / "docs" / "performance.md"


@pytest.fixture(scope="module")
def combined() -> dict:
    return harness.load()


def test_the_reports_are_what_results_json_generates(combined: dict) -> None:
    for path, text in harness.generated(combined).items():
        assert path.read_text() == text, f"{path.name} drifted: run `python -m benchmarks.harness`"
    # the docs include results.md as it is, so their tables are generated too
    assert '--8<-- "benchmarks/results/results.md"' in DOCS.read_text()


def test_every_entry_has_its_targets_checked_as_its_scenario_declares(combined: dict) -> None:
    for key, figures in combined["benchmarks"].items():
        name = key.removesuffix("_citus")
        again = harness.record(harness.scenario(name), figures)["targets"]
        assert figures["targets"] == json.loads(json.dumps(again)), key


def test_a_target_is_met_on_its_bound_and_missed_without_a_figure() -> None:
    assert harness.Target("t", 2.0, "<=", 2.0, "<= 2 s").met
    assert not harness.Target("t", 2.1, "<=", 2.0, "<= 2 s").met
    assert harness.Target("t", 0.5, ">=", 0.4, ">= 0.4x").met
    assert not harness.Target("t", None, "<=", 2.0, "<= 2 s").met
    figures = {"targets": {"t": harness.Target("t", 3.0, "<=", 2.0, "p95 <= 2 s").stored()}}
    assert harness.verdict(figures, "t", "absent") == "p95 <= 2 s: missed"


def test_the_readme_table_shows_the_headline_figures(combined: dict) -> None:
    table = harness.readme_table(combined)
    sink = combined["benchmarks"]["sink"]["runs"]["ours"]["rows_per_s"]
    assert f"{sink:,.0f} rows/s" in table
    shown = (*harness.ORDER, *harness.OWN_RUN)  # make bench's, then the soak's
    assert table.count("\n") == 2 + sum(
        1 for n in shown if harness.scenario(n).headline and n in combined["benchmarks"]
    )
    soak = combined["benchmarks"]["soak"]
    assert f"{soak['sent']:,} messages into postgres and citus: 0 lost, 0 twice" in table


def test_a_row_template_is_filled_in_with_figures_specs_and_verdicts() -> None:
    figures = {
        "rows": 2_000_000,
        "p99_ms": 8.84,
        "runs": {"ours": {"rows_per_s": 1234.4}},
        "targets": {"t": harness.Target("t", 1.0, "<=", 2.0, "<= 2 s").stored()},
    }
    row = "x {rows:M} | {runs[ours][rows_per_s]:,.0f} rows/s | p99 {p99_ms:ms} | | {targets:t; u}"
    assert harness.cells(figures, row) == ["x 2M", "1,234 rows/s", "p99 8.8 ms", "", "<= 2 s: met"]
    assert harness.cells(figures, "| y") == ["", "y", "", "", ""]
