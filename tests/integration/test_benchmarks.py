"""Each kept benchmark's quick mode: it runs, stores every figure with its targets checked,
prints its rows as the report shows them, and its contenders did the same work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import harness

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.independent  # each quick mode its own process, topics, databases


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
    result = json.loads(out.read_text())
    assert result["machine"]["cores"] == os.cpu_count()  # measured on this machine
    return result, proc.stdout


def reported(module: str, tmp_path: Path, timeout: float = 540) -> dict:
    """The quick run's figures, after checking the harness's one way of showing them: each
    target met exactly when its figure is within its bound, and the rows printed as the
    report renders them from the stored figures."""
    result, stdout = run_quick(module, tmp_path / f"{module}.json", timeout)
    scenario = harness.scenario(module)
    assert result["targets"] == json.loads(json.dumps(harness.record(scenario, result)["targets"]))
    for name, t in result["targets"].items():
        assert t["met"] == (
            t["figure"] is not None and harness.OPS[t["op"]](t["figure"], t["bound"])
        )
        assert f"target {name}: {'met' if t['met'] else 'MISSED'}" in stdout
    table = "\n".join(harness.markdown_table(scenario.columns, scenario.table(result)))
    assert table in stdout
    return result


@pytest.mark.timeout(300)
def test_producer_benchmark_quick_mode_sends_every_message_each_way(tmp_path: Path) -> None:
    result = reported("producer", tmp_path, 280)
    assert result["messages"] == harness.scenario("producer").quick["messages"]
    for key in ("raw", "same_messages", "storefront", "lab_uniform"):
        assert result[f"{key}_msg_per_s"] > 0, key
    target = result["targets"]["same_messages_ge_0_8x_raw"]
    assert target["figure"] == result["same_messages_msg_per_s"] / result["raw_msg_per_s"]


@pytest.mark.timeout(600)
def test_sink_benchmark_quick_mode_writes_the_same_rows_every_way(tmp_path: Path) -> None:
    result = reported("sink", tmp_path)
    runs, n, quick = result["runs"], result["rows"], harness.scenario("sink").quick
    assert n == quick["rows"]
    for key, run in runs.items():
        # every contender wrote the same rows (the lab's sink a slice of them), counted after
        assert run["rows"] == (quick["lab_rows"] if key == "lab" else n), key
        for figure in ("seconds", "rows_per_s", "db_cpu_s", "db_cpu_us_per_row_own",
                       "client_cpu_us_per_row", "total_cpu_us_per_row"):  # fmt: skip
            assert run[figure] > 0, (key, figure)
        assert run["rows_per_s"] == pytest.approx(run["rows"] / run["seconds"], rel=0.01)
    from benchmarks.sink import BASELINES

    for key in BASELINES:
        assert result["ratios"][f"ours_over_{key}"] == pytest.approx(
            runs["ours"]["rows_per_s"] / runs[key]["rows_per_s"]
        )
        own = runs["ours"]["db_cpu_us_per_row_own"] / runs[key]["db_cpu_us_per_row_own"]
        assert result["cpu_ratios"][f"ours_cpu_per_row_over_{key}"] == pytest.approx(own)


@pytest.mark.timeout(600)
def test_end_to_end_benchmark_quick_mode_ingests_and_copies_the_same_rows(tmp_path: Path) -> None:
    result = reported("end_to_end", tmp_path)
    n, ingest, copy = result["messages"], result["ingest"], result["copy_1"]
    assert ingest["rows"] == copy["rows"] == n
    assert result["ratio_ingest_over_copy_1"] == pytest.approx(
        ingest["rows_per_s"] / copy["rows_per_s"]
    )
    b = result["breakdown"]
    parts = b["session_s"] + b["first_batch_s"] + b["other_batches_s"] + b["outside_batches_s"]
    assert parts == pytest.approx(ingest["wall_seconds"], abs=0.01)
    assert ingest["session_s"] > 0 and ingest["python_worker_processes"] >= 1


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


def test_the_cpu_meter_counts_a_backend_that_came_and_went_between_two_samples(tier) -> None:
    import psutil

    from benchmarks.common import DbCpuMeter
    from clickstream_pipeline.warehouse.database import connect
    from devkit.waits import wait_until

    with DbCpuMeter(tier.db, interval_s=3600) as meter:  # samples only on entering and leaving
        conn = connect(tier.db)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            (backend,) = cur.fetchone()
            cur.execute("SELECT count(*) FROM generate_series(1, 3000000)")
        conn.close()
        wait_until(lambda: not psutil.pid_exists(backend), 10, "the backend to be reaped")
    assert backend not in meter._seen  # never sampled: its work is only in the server's total
    assert meter.reading.own_s >= 0.1 and meter.reading.own_s <= meter.reading.total_s


@pytest.mark.timeout(300)
def test_rollups_benchmark_quick_mode_compares_both_servers(tmp_path: Path) -> None:
    from devkit.db import CITUS_UNAVAILABLE

    result = reported("rollups", tmp_path, 280)
    servers = ["postgres"] if CITUS_UNAVAILABLE.is_file() else ["postgres", "citus"]
    assert sorted(r["server"] for r in result["runs"].values()) == sorted(servers)
    for run in result["runs"].values():
        assert run["events"] == 20_000 and run["total_s"] > 0 and run["db_cpu_s"] > 0
        assert run["total_s"] == pytest.approx(sum(run["seconds"].values()))
    if "citus" in servers:
        plain, citus = result["runs"]["postgres_20000"], result["runs"]["citus_20000"]
        ratio = result["ratios"]["citus_over_postgres_s_per_event_20000"]
        assert ratio == pytest.approx(citus["us_per_event"] / plain["us_per_event"])
        assert len(citus["servers"]) == 3


@pytest.mark.timeout(600)
def test_stages_benchmark_quick_mode_times_both_designs(tmp_path: Path) -> None:
    result = reported("stages", tmp_path)
    stages, n = result["stages"], result["messages"]
    for design, names in (
        ("kafka", ("kafka defaults", "kafka")),
        ("spark rules", ("parse", "validate", "to python", "sink")),
        ("worker rules", ("to python, bytes checked per row", "to python", "validate", "sink")),
    ):
        for name in names:
            figures = stages[f"{design}: {name}"]
            assert figures["seconds"] > 0, (design, name)
            # every stage went through the whole topic
            assert figures["rows_per_s"] == pytest.approx(n / figures["seconds"], rel=0.01)
    ratio = result["worker_over_spark_rules"]
    assert ratio == pytest.approx(
        stages["spark rules: sink"]["seconds"] / stages["worker rules: sink"]["seconds"]
    )
    rows_bound = result["to_python_rows_bound_over_bytes_per_row"]
    per_row = stages["worker rules: to python, bytes checked per row"]["seconds"]
    assert rows_bound == pytest.approx(per_row / stages["worker rules: to python"]["seconds"])


@pytest.mark.timeout(600)
def test_freshness_benchmark_quick_mode_reports_each_scenario(tmp_path: Path) -> None:
    result = reported("freshness", tmp_path)
    for key in ("visible_in_events_batch_commit", "counted_in_rollup_5min"):
        # every event of the steady window was seen in events and in the rollup
        assert result[key]["n"] == result["events"] > 0
        assert 0 < result[key]["p50_s"] <= result[key]["p95_s"] <= result[key]["max_s"]
    sustained = result["sustained"]
    assert sustained["events"] > 0 and sustained["rate_msg_per_s"] == 20_000
    fixed = result["fixed_cost"]
    assert fixed["batches"] >= 3 and fixed["trigger_ms_median"] > 0
    assert len(result["visible_delay_quantiles_s"]) == 101


@pytest.mark.timeout(300)
def test_viewers_benchmark_quick_mode_measures_every_server_against_the_development_one(
    tmp_path: Path,
) -> None:
    result = reported("viewers", tmp_path, 280)
    servers = result["servers"]
    assert list(servers) == ["development", "waitress", "gunicorn, no cache", "gunicorn"]
    for name, figures in servers.items():
        assert figures["refreshes"] > 0 and figures["errors"] == 0, (name, figures)
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert 1 <= figures["most_db_connections"] <= 2 * figures["serving"]["pool_size"]
        assert (
            figures["p99_over_development"] == figures["p99_ms"] / servers["development"]["p99_ms"]
        )


@pytest.mark.timeout(360)
def test_peer_benchmark_quick_mode_measures_ours_and_kafka_connect_in_one_run(
    tmp_path: Path,
) -> None:
    result = reported("peer_connect", tmp_path, 300)
    n = result["messages"]
    fresh_n = result["freshness"]["rate_msg_per_s"] * result["freshness"]["seconds"]
    # like with like: one topic of the lab's plain JSON for both (the peer's converter has the
    # schema in its config, not in each message), into tables of the same shape
    assert result["topics"]["ours"] == result["topics"]["peer"]
    worker = result["peer_settings"]["worker"]
    assert worker["value.converter.schemas.enable"] == "true"
    assert json.loads(worker["value.converter.schema.content"])["type"] == "struct"
    tables = result["tables"]
    assert tables["events"] == tables["peer_events"]
    assert tables["events"]["partitions"] > 1 and "brin (event_id)" in tables["events"]["indexes"]
    # the same rows from each, by count and by checksum, computed in SQL on each table: all n
    # once in the first run and after the kill (the peer's copies aside), and the freshness
    # run's events (same fields, topics of their own)
    same = result["same_rows"]
    for phase, count, copies in (
        ("throughput", n, False),
        ("after_kill", n, False),
        ("freshness", fresh_n, True),
    ):
        ours, peer = same[phase]["ours"], same[phase]["peer"]
        key, checksum = ("rows", "checksum_all") if copies else ("distinct", "checksum")
        assert ours[key] == peer[key] == count, phase
        assert ours[checksum] == peer[checksum], phase
    first = same["throughput"]
    assert first["ours"]["rows"] == first["peer"]["rows"] == n
    assert same["after_kill"]["ours"]["checksum"] == first["ours"]["checksum"]
    assert same["after_kill"]["ours"]["rows"] == n
    assert same["after_kill"]["peer"]["rows"] == n + result["peer_duplicated"]
    for name in ("ours", "peer"):
        figures = result[name]
        assert figures["rows"] == n
        assert figures["rows_per_s"] == pytest.approx(n / figures["seconds"], rel=1e-3)
        assert 0 < figures["start_to_first_row_s"] <= figures["seconds"]
        assert figures["db_cpu_us_per_row"] > 0 and figures["peak_memory_mib"] > 100
        assert n // 2 <= figures["killed_at_rows"] <= n + figures["duplicated"]
        fresh = result["freshness"][name]
        assert fresh["rows"] == fresh_n
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
    assert result["targets"]["exactly_once"]["met"]
    settings = result["peer_settings"]["connector"]
    assert settings["connector.class"] == "io.debezium.connector.jdbc.JdbcSinkConnector"
    assert settings["connection.password"].startswith("${env:")  # never the secret itself
