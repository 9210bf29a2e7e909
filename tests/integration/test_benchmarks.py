"""The sink benchmark's quick mode: it runs, and its JSON holds every figure, consistent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LABELS = {
    "ours": "(a) ours",
    "ours_csv": "(a') ours, CSV path",
    "jdbc": "(b) Spark JDBC",
    "lab": "(c) lab INSERT/row",
    "copy_1": "(d) psql \\copy x1",
    "copy_2": "(d) psql \\copy x2",
}
FIGURES = (
    "rows",
    "seconds",
    "rows_per_s",
    "db_cpu_s",
    "db_cpu_us_per_row",
    "db_cpu_us_per_row_own",
    "client_cpu_us_per_row",
    "total_cpu_us_per_row",
)


def run_quick(module: str, out: Path, timeout: float) -> tuple[dict, str]:
    """`python -m benchmarks.<module> --quick`: its JSON result and what it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.timeout(600)
def test_sink_benchmark_quick_mode_reports_every_figure(tmp_path: Path) -> None:
    result, stdout = run_quick("sink", tmp_path / "sink.json", 540)
    assert result["machine"]["cores"] == os.cpu_count()  # measured on this machine
    runs = result["runs"]
    printed = {}
    for key, label in LABELS.items():
        for figure in FIGURES:
            assert runs[key][figure] > 0, (key, figure)
        line = next(li for li in stdout.splitlines() if li.startswith(label))
        printed[key] = float(re.split(r"\s{2,}", line[len(label) :].strip())[0].replace(",", ""))
        assert printed[key] == pytest.approx(runs[key]["rows_per_s"], rel=0.01, abs=1)
    for key in ("ours_csv", "jdbc", "lab", "copy_1", "copy_2"):
        ratio = result["ratios"][f"ours_over_{key}"]
        assert ratio == pytest.approx(printed["ours"] / printed[key], rel=0.02)
        assert f"rows/s ratio ours_over_{key}: {ratio:.2f}" in stdout
        cpu = result["cpu_ratios"][f"ours_cpu_per_row_over_{key}"]
        own = runs["ours"]["db_cpu_us_per_row_own"] / runs[key]["db_cpu_us_per_row_own"]
        assert cpu == pytest.approx(own) and cpu > 0
    assert set(result["targets"]) == {
        "db_cpu_per_row_le_copy",
        "db_cpu_per_row_le_0.6x_jdbc",
        "rows_per_s_ge_jdbc",
        "rows_per_s_ge_1.5x_jdbc_stretch",
    }


def test_the_cpu_meter_watches_the_server_behind_each_node(tier) -> None:
    from benchmarks.common import DbCpuMeter
    from clickstream_pipeline.warehouse.database import connect
    from devkit.db import citus_workers, query

    nodes = [tier.db, *citus_workers(tier.db)]
    assert len(nodes) == (3 if tier.citus else 1)
    # The backend lives through the whole reading, as the benchmarks' do: a backend that starts
    # and ends between two samples is only in the server's total (a CI run saw none of it).
    conn = connect(tier.db)
    try:
        with DbCpuMeter(tier.db) as meter, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM generate_series(1, 3000000)")
    finally:
        conn.close()
    assert meter.reading.own_s > 0
    assert len(meter.servers) == len(nodes)
    for node in nodes:
        pid = meter.servers[f"{node.host}:{node.port}"]
        ((data_dir,),) = query(node, "SHOW data_directory")
        # the postmaster of that very server: it was started on that data directory
        assert (Path(data_dir) / "postmaster.pid").read_text().split()[0] == str(pid)


@pytest.mark.timeout(300)
def test_rollups_benchmark_quick_mode_compares_both_servers(tmp_path: Path) -> None:
    from devkit.db import CITUS_UNAVAILABLE

    result, stdout = run_quick("rollups", tmp_path / "rollups.json", 280)
    servers = ["postgres"] if CITUS_UNAVAILABLE.is_file() else ["postgres", "citus"]
    assert sorted(r["server"] for r in result["runs"].values()) == sorted(servers)
    for run in result["runs"].values():
        assert run["events"] == 20_000 and run["total_s"] > 0 and run["db_cpu_s"] > 0
        assert run["total_s"] == pytest.approx(sum(run["seconds"].values()))
    if "citus" in servers:
        plain, citus = result["runs"]["postgres_20000"], result["runs"]["citus_20000"]
        ratio = result["ratios"]["citus_over_postgres_s_per_event_20000"]
        assert ratio == pytest.approx(citus["us_per_event"] / plain["us_per_event"])
        assert f"ratio citus_over_postgres_s_per_event_20000: {ratio:.2f}" in stdout
        assert len(citus["servers"]) == 3


@pytest.mark.timeout(600)
def test_stages_benchmark_quick_mode_times_both_designs(tmp_path: Path) -> None:
    result, stdout = run_quick("stages", tmp_path / "stages.json", 540)
    stages = result["stages"]
    for design, names in (
        ("kafka", ("kafka defaults", "kafka")),
        ("spark rules", ("parse", "validate", "to python", "sink")),
        ("worker rules", ("to python, bytes checked per row", "to python", "validate", "sink")),
    ):
        for name in names:
            figures = stages[f"{design}: {name}"]
            assert figures["seconds"] > 0 and figures["rows_per_s"] > 0, (design, name)
            assert f"{design:>12} {name:>14}:" in stdout
    ratio = result["worker_over_spark_rules"]
    assert ratio == pytest.approx(
        stages["spark rules: sink"]["seconds"] / stages["worker rules: sink"]["seconds"]
    )
    assert f"worker rules over Spark rules, Kafka to events: {ratio:.2f}x" in stdout
    rows_bound = result["to_python_rows_bound_over_bytes_per_row"]
    per_row = stages["worker rules: to python, bytes checked per row"]["seconds"]
    assert rows_bound == pytest.approx(per_row / stages["worker rules: to python"]["seconds"])
    assert f"Spark 4.0's per-row byte check: {rows_bound:.2f}x" in stdout


@pytest.mark.timeout(600)
def test_freshness_benchmark_quick_mode_reports_each_scenario(tmp_path: Path) -> None:
    result, stdout = run_quick("freshness", tmp_path / "freshness.json", 540)
    for key in ("visible_in_events_batch_commit", "counted_in_rollup_5min"):
        assert result[key]["n"] == result["events"] > 0
        assert 0 < result[key]["p50_s"] <= result[key]["p95_s"] <= result[key]["max_s"]
    sustained = result["sustained"]
    assert sustained["events"] > 0 and sustained["rate_msg_per_s"] == 20_000
    fixed = result["fixed_cost"]
    assert fixed["batches"] >= 3 and fixed["trigger_ms_median"] > 0
    assert set(result["targets"]) == {
        "events_p95_le_2s",
        "rollup_p95_le_3s",
        "sustained_p95_le_5s_not_growing",
        "fixed_cost_le_0_3s",
    }
    assert f"fixed cost of a one-message batch (trigger, median of {fixed['batches']})" in stdout


@pytest.mark.timeout(300)
def test_viewers_benchmark_quick_mode_measures_every_server_against_the_development_one(
    tmp_path: Path,
) -> None:
    result, stdout = run_quick("viewers", tmp_path / "viewers.json", 280)
    servers = result["servers"]
    assert list(servers) == ["development", "waitress", "gunicorn, no cache", "gunicorn"]
    for name, figures in servers.items():
        assert figures["refreshes"] > 0 and figures["errors"] == 0, (name, figures)
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert 1 <= figures["most_db_connections"] <= 2 * figures["serving"]["pool_size"]
        assert (
            figures["p99_over_development"] == figures["p99_ms"] / servers["development"]["p99_ms"]
        )
        assert f"{name}: p99 {figures['p99_over_development']:.3f}x the development" in stdout
    assert set(result["targets"]) == {"p99_le_250ms", "no_errors", "connections_bounded"}


@pytest.mark.timeout(600)
def test_peer_benchmark_quick_mode_measures_ours_and_kafka_connect_in_one_run(
    tmp_path: Path,
) -> None:
    result, stdout = run_quick("peer_connect", tmp_path / "peer.json", 540)
    n = result["messages"]
    for name in ("ours", "peer"):
        figures = result[name]
        assert figures["rows"] == n
        assert figures["rows_per_s"] == pytest.approx(n / figures["seconds"], rel=1e-3)
        assert 0 < figures["start_to_first_row_s"] <= figures["seconds"]
        assert figures["db_cpu_us_per_row"] > 0 and figures["peak_memory_mib"] > 100
        assert n // 2 <= figures["killed_at_rows"] <= n + figures["duplicated"]
        fresh = result["freshness"][name]
        assert fresh["rows"] == result["freshness"]["rate_msg_per_s"] * 6  # the quick 6 s
        assert 0 < fresh["p50_s"] <= fresh["p95_s"]
    assert result["ours_over_peer_rows_per_s"] == (
        result["ours"]["rows_per_s"] / result["peer"]["rows_per_s"]
    )
    # ours is exactly once through the kill; the peer (at-least-once) loses nothing either, and
    # writes again what it wrote since its last offset commit (Connect commits every 60 s; the
    # quick run is killed well before that), at most every row once more
    assert result["ours_lost"] == result["ours_duplicated"] == 0
    assert result["peer_lost"] == 0 and 0 < result["peer_duplicated"] <= n
    assert result["peer"]["duplicated"] == result["peer_duplicated"]
    duplicated = rf"SIGKILL half-way: duplicated\s+0\s+{result['peer_duplicated']:,}\n"
    assert re.search(duplicated, stdout)
    settings = result["peer_settings"]["connector"]
    assert settings["connector.class"] == "io.debezium.connector.jdbc.JdbcSinkConnector"
    assert settings["connection.password"].startswith("${env:")  # never the secret itself
    assert re.search(r"ours over the peer: [\d.]+x rows/s", stdout)
    assert re.search(r"SIGKILL half-way: rows lost\s+0\s+0", stdout)
