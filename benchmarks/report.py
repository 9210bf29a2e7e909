"""Combine the benchmarks' JSON files into `results.json`, `results.md` and `results.png`.

Run: `.venv/bin/python -m benchmarks.report` (run_all calls it at the end).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine_facts, say

PARTS = (
    "producer",
    "sink",
    "stages",
    "end_to_end",
    "freshness",
    "dashboard",
    "viewers",
    "peer_connect",
    "rollups",
    "bootstrap",
)
# run against both servers: `<name>.json` on plain PostgreSQL, `<name>_citus.json` on Citus
ON_BOTH = ("sink", "stages", "end_to_end", "freshness", "dashboard")


def load_parts(folder: Path = RESULTS) -> dict[str, Any]:
    parts = {}
    for name in (*PARTS, *(f"{n}_citus" for n in ON_BOTH)):
        path = folder / f"{name}.json"
        if path.is_file():
            parts[name] = json.loads(path.read_text())
    return parts


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _met(value: bool | None) -> str:
    return "?" if value is None else "met" if value else "missed"


def _ms(value: float) -> str:
    """Milliseconds; a run cut by the statement timeout (120 s by default) says so."""
    if value >= 119_000:
        return "timeout (> 120 s)"
    return f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"


def markdown(parts: dict[str, Any], machine: dict[str, Any]) -> str:
    lines = [
        f"Machine: {machine['cores']} cores ({machine.get('cpu_model', '?')}), "
        f"{machine['memory_gib']} GiB, {machine['os']}; Python {machine['python']}, "
        f"PySpark {machine.get('pyspark', '?')} (`local[2]`), "
        f"librdkafka {machine.get('librdkafka', '?')}.",
        "",
        "### Plain PostgreSQL 15 (one server)",
        "",
        *table(parts),
    ]
    citus = {n: parts[f"{n}_citus"] for n in ON_BOTH if f"{n}_citus" in parts}
    if citus:
        lines += [
            "",
            "### Citus 13.2 (coordinator + 2 workers on the same 2 cores; DB CPU over all three)",
            "",
            *table(citus),
        ]
    if "bootstrap" in parts:
        lines += ["", "### Bootstrap of a new database", "", *bootstrap_rows(parts["bootstrap"])]
    if "rollups" in parts:
        lines += [
            "",
            "### Rollups after a batch, both servers in one run",
            "",
            *rollup_rows(parts["rollups"]),
        ]
    return "\n".join(lines) + "\n"


def bootstrap_rows(boot: dict[str, Any]) -> list[str]:
    rows = [
        "| server | first run s (median) | second run s | partitions | shards | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    met = boot.get("targets", {}).get("citus_first_bootstrap_within_15s")
    for server, r in boot["servers"].items():
        target = "" if server != "citus" else f"<= 15 s: {'met' if met else 'missed'}"
        rows.append(
            f"| {server} | {r['first_s_median']:.2f} | {r['second_s_median']:.2f} | "
            f"{r['partitions']} | {r['shards']} | {target} |"
        )
    return rows


def rollup_rows(roll: dict[str, Any]) -> list[str]:
    rows = [
        "| server | new events | 5-minute s | hourly s | dashboard s | total s | events/s | "
        "DB CPU us/event | Citus / PostgreSQL s per event |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    ratios = roll.get("ratios", {})
    for run in roll["runs"].values():
        s = run["seconds"]
        ratio = ratios.get(f"citus_over_postgres_s_per_event_{run['events']}")
        shown = f"{ratio:.2f}x" if ratio is not None and run["server"] == "citus" else ""
        rows.append(
            f"| {run['server']} | {run['events']:,} | {s['five_minutely_aggregation']:.2f} | "
            f"{s['hourly_aggregation']:.2f} | {s['dashboard_aggregation']:.2f} | "
            f"{run['total_s']:.2f} | {_n(run['events_per_s'])} | "
            f"{run['db_cpu_us_per_event']:.1f} | {shown} |"
        )
    for key, met in roll.get("targets", {}).items():
        rows.append(f"| target `{key}` | {'met' if met else 'missed'} | | | | | | | |")
    return rows


def table(parts: dict[str, Any]) -> list[str]:
    """The benchmark table for one server's results."""
    lines = [
        "| benchmark | figure | baseline (same run) | ratio | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    sink = parts.get("sink")
    if sink:
        r, q, c = sink["runs"], sink["ratios"], sink["cpu_ratios"]
        t = sink["targets"]
        o = r["ours"]
        lines += [
            f"| sink, {sink['rows']:,} rows | ours {_n(o['rows_per_s'])} rows/s | "
            f"Spark JDBC {_n(r['jdbc']['rows_per_s'])} rows/s | {q['ours_over_jdbc']:.2f}x | "
            f">= 1x (1.5x): {'met' if t['rows_per_s_ge_jdbc'] else 'missed'} |",
            f"| | | our CSV path {_n(r['ours_csv']['rows_per_s'])} rows/s | "
            f"{q['ours_over_ours_csv']:.2f}x | |",
            f"| | | lab INSERT per row {_n(r['lab']['rows_per_s'])} rows/s | "
            f"{q['ours_over_lab']:.0f}x | |",
            f"| | | `\\copy` 1 stream {_n(r['copy_1']['rows_per_s'])} rows/s | "
            f"{q['ours_over_copy_1']:.2f}x | |",
            f"| | | `\\copy` 2 streams {_n(r['copy_2']['rows_per_s'])} rows/s | "
            f"{q['ours_over_copy_2']:.2f}x | |",
            f"| sink, DB CPU per row | ours {o['db_cpu_us_per_row_own']:.2f} us | "
            f"`\\copy` {r['copy_1']['db_cpu_us_per_row_own']:.2f} us | "
            f"{c['ours_cpu_per_row_over_copy_1']:.2f}x | <= 1x: "
            f"{'met' if t['db_cpu_per_row_le_copy'] else 'missed'} |",
            f"| | | our CSV path {r['ours_csv']['db_cpu_us_per_row_own']:.2f} us | "
            f"{c['ours_cpu_per_row_over_ours_csv']:.2f}x | |",
            f"| | | Spark JDBC {r['jdbc']['db_cpu_us_per_row_own']:.2f} us | "
            f"{c['ours_cpu_per_row_over_jdbc']:.2f}x | <= 0.6x: "
            f"{'met' if t['db_cpu_per_row_le_0.6x_jdbc'] else 'missed'} |",
            f"| | | lab INSERT per row {r['lab']['db_cpu_us_per_row_own']:.1f} us | "
            f"{c['ours_cpu_per_row_over_lab']:.2f}x | |",
        ]
    stages = parts.get("stages")
    if stages:
        f = stages["stages"]
        own = "; ".join(
            f"{name.split(': ')[1]} {v['own_us_per_row']:.2f}"
            for name, v in f.items()
            if name.startswith(("spark rules", "worker rules"))
        )
        lines.append(
            f"| stages, {stages['messages']:,} messages: Kafka -> `events`, worker rules | "
            f"{_n(f['worker rules: sink']['rows_per_s'])} rows/s | Spark rules "
            f"{_n(f['spark rules: sink']['rows_per_s'])} rows/s; Kafka read alone "
            f"{_n(f['kafka: kafka']['rows_per_s'])} rows/s (Kafka's default fetch sizes "
            f"{_n(f['kafka: kafka defaults']['rows_per_s'])}) | "
            f"{stages['worker_over_spark_rules']:.2f}x | us per row, each stage: {own} |"
        )
        per_row = f.get("worker rules: to python, bytes checked per row")
        if per_row:
            by_rows = f["worker rules: to python"]
            lines.append(
                f"| stages: Kafka to a Python worker, Arrow batches bounded by rows | "
                f"{_n(by_rows['rows_per_s'])} rows/s (own {by_rows['own_us_per_row']:.2f} us/row)"
                f" | Spark 4.0's default, the batch sized after every row: "
                f"{_n(per_row['rows_per_s'])} rows/s (own {per_row['own_us_per_row']:.2f} us/row)"
                f" | {stages['to_python_rows_bound_over_bytes_per_row']:.2f}x | |"
            )
    e2e = parts.get("end_to_end")
    if e2e:
        i = e2e["ingest"]
        lines += [
            f"| end to end, {e2e['messages']:,} messages | {_n(i['rows_per_s'])} rows/s "
            f"({i['wall_seconds']:.0f} s, {i['batches']} batches, median batch "
            f"{_n(i['batch_rows_per_s_median'])} rows/s) | `\\copy` 1 stream "
            f"{_n(e2e['copy_1']['rows_per_s'])} rows/s | "
            f"{e2e['ratio_ingest_over_copy_1']:.2f}x | >= 0.4x: "
            f"{'met' if e2e['targets']['e2e_ge_40pct_of_copy_1'] else 'missed'}; >= 0.25x "
            f"(progress): {_met(e2e['ratio_ingest_over_copy_1'] >= 0.25)} |",
            f"| end to end, peak memory | driver JVM {_n(i['driver_jvm_peak_mib'])} MiB, "
            f"Python worker {_n(i['python_worker_peak_mib'])} MiB "
            f"(all workers {_n(i['python_workers_peak_total_mib'])} MiB) | | | |",
        ]
        b = e2e.get("breakdown")
        if b:
            lines.append(
                f"| end to end, where the time went | {session(b)}first batch "
                f"{b['first_batch_s']:.1f} s "
                f"(warm-up {b['warm_up_s']:.1f} s); other batches {b['other_batches_s']:.1f} s "
                f"at {_n(b['steady_rows_per_s'])} rows/s; outside batches "
                f"{b['outside_batches_s']:.1f} s ({b['outside_per_batch_s']:.2f} s a batch; "
                f"query start to first trigger {b.get('start_s', 0):.1f} s, checkpoint and "
                f"offset commits {b.get('checkpoint_s', 0):.1f} s) | | | |"
            )
    fresh = parts.get("freshness")
    if fresh:
        v, ro = fresh["visible_in_events_batch_commit"], fresh["counted_in_rollup_5min"]
        lines += [
            f"| freshness, {_n(fresh['rate_msg_per_s'])} msg/s for {fresh['duration_s']:.0f} s, "
            f"trigger {fresh['trigger_interval']} | Kafka -> `events`: p50 {v['p50_s']:.1f} s, "
            f"p95 {v['p95_s']:.1f} s, max {v['max_s']:.1f} s | | | |",
            f"| | Kafka -> `rollup_events_5min`: p50 {ro['p50_s']:.1f} s, p95 {ro['p95_s']:.1f} s,"
            f" max {ro['max_s']:.1f} s | | | p95 <= 3 s (events <= 2 s): "
            f"{_met(fresh['targets'].get('rollup_p95_le_3s'))} "
            f"({_met(fresh['targets'].get('events_p95_le_2s'))}) |",
        ]
        sus = fresh.get("sustained")
        if sus:
            sv = sus["visible_in_events_batch_commit"]
            lines.append(
                f"| sustained {_n(sus['rate_msg_per_s'])} msg/s for {sus['duration_s']:.0f} s | "
                f"Kafka -> `events` p50 {sv['p50_s']:.1f} s, p95 {sv['p95_s']:.1f} s; p50 "
                f"first half {sus['p50_first_half_s']:.1f} s, second half "
                f"{sus['p50_second_half_s']:.1f} s | | | p95 <= 5 s, not growing: "
                f"{_met(fresh['targets']['sustained_p95_le_5s_not_growing'])} |"
            )
        fixed = fresh.get("fixed_cost")
        if fixed:
            phases = fixed["phases_ms_median"]
            lines.append(
                f"| fixed cost of a one-message micro-batch (median of {fixed['batches']}) | "
                f"{fixed['trigger_ms_median'] / 1000:.2f} s (foreachBatch "
                f"{phases.get('addBatch', 0):.0f} ms, offsets log {phases.get('walCommit', 0):.0f}"
                f" ms, commit {phases.get('commitOffsets', 0):.0f} ms) | | | <= 0.3 s: "
                f"{_met(fresh['targets']['fixed_cost_le_0_3s'])} |"
            )
    dash = parts.get("dashboard")
    if dash:
        for name, f in dash["queries"].items():
            lines.append(
                f"| dashboard `{name}` ({dash['events']:,} events) | rollup p50 "
                f"{_ms(f['rollup_p50_ms'])}, p99 {_ms(f['rollup_p99_ms'])} "
                f"({f.get('rollup_runs', '?')} runs) | raw `events` p50 "
                f"{_ms(f['raw_p50_ms'])} ({f.get('raw_runs', '?')} runs) | "
                f"{f['speedup_p50']:,.1f}x | p99 <= 20 ms: "
                f"{'met' if f['rollup_p99_ms'] <= 20 else 'missed'}; >= 50x: "
                f"{'met' if f['speedup_p50'] >= 50 else 'missed'} |"
            )
        lines += panel_rows(dash)
    lines += viewer_rows(parts.get("viewers"))
    lines += peer_rows(parts.get("peer_connect"))
    prod = parts.get("producer")
    if prod:
        lines.append(
            f"| producer, {prod['messages']:,} messages | storefront "
            f"{_n(prod['storefront_msg_per_s'])} msg/s, lab-uniform "
            f"{_n(prod['lab_uniform_msg_per_s'])} msg/s | raw confluent-kafka "
            f"{_n(prod['raw_msg_per_s'])} msg/s | "
            f"{prod['storefront_msg_per_s'] / prod['raw_msg_per_s']:.2f}x | |"
        )
    return lines


def session(breakdown: dict[str, Any]) -> str:
    """The Spark session's build, part of the end-to-end clock (results before it left it out)."""
    seconds = breakdown.get("session_s")
    return "" if seconds is None else f"Spark session {seconds:.1f} s; "


def viewer_rows(viewers: dict[str, Any] | None) -> list[str]:
    """One row per way of serving the dashboard, against the development server."""
    if not viewers:
        return []
    rows = []
    for name, f in viewers["servers"].items():
        ok = f["p99_ms"] is not None and f["p99_ms"] <= 250 and f["errors"] == 0
        rows.append(
            f"| dashboard, {viewers['viewers']} viewers refreshing every "
            f"{viewers['interval_s']:g} s: {name} | p99 {_ms(f['p99_ms'])}, "
            f"{f['refreshes_per_s']:.0f} refreshes/s, {f['errors']} errors, at most "
            f"{f['most_db_connections']} connections | development server p99 "
            f"{_ms(viewers['servers']['development']['p99_ms'])} | "
            f"{f['p99_over_development']:.2f}x p99 | p99 <= 250 ms, no errors: {_met(ok)} |"
        )
    return rows


def peer_rows(peer: dict[str, Any] | None) -> list[str]:
    """Ours against Kafka Connect's JDBC sink (Debezium's), same rows, same run."""
    if not peer:
        return []
    ours, theirs, fresh = peer["ours"], peer["peer"], peer["freshness"]
    return [
        f"| end to end, {peer['messages']:,} lab messages: ours vs Kafka Connect + Debezium JDBC "
        f"sink | ours {_n(ours['rows_per_s'])} rows/s, {ours['db_cpu_us_per_row']:.1f} us DB "
        f"CPU/row, {_n(ours['peak_memory_mib'])} MiB | peer {_n(theirs['rows_per_s'])} rows/s, "
        f"{theirs['db_cpu_us_per_row']:.1f} us/row, {_n(theirs['peak_memory_mib'])} MiB | "
        f"{peer['ours_over_peer_rows_per_s']:.2f}x | |",
        f"| SIGKILL half-way, then a restart: rows lost / duplicated | ours "
        f"{peer['ours_lost']:,} / {peer['ours_duplicated']:,} | peer {peer['peer_lost']:,} / "
        f"{peer['peer_duplicated']:,} | | exactly once: "
        f"{_met(peer['ours_lost'] == peer['ours_duplicated'] == 0)} |",
        f"| freshness at {fresh['rate_msg_per_s']:,.0f} msg/s, send to row written, p50 / p95 | "
        f"ours {fresh['ours']['p50_s']:.2f} / {fresh['ours']['p95_s']:.2f} s | peer "
        f"{fresh['peer']['p50_s']:.2f} / {fresh['peer']['p95_s']:.2f} s | | |",
    ]


def panel_rows(dash: dict[str, Any]) -> list[str]:
    """One row per live-dashboard panel: p50 / p99 for each range and customer choice."""
    cells: dict[str, list[str]] = {}
    worst: dict[str, float] = {}
    for key, f in dash.get("panels", {}).items():
        panel, view = key.split("/", 1)
        cells.setdefault(panel, []).append(f"{view} {_ms(f['p50_ms'])} / {_ms(f['p99_ms'])}")
        worst[panel] = max(worst.get(panel, 0.0), f["p99_ms"])
    return [
        f"| dashboard panel `{panel}` ({dash['events']:,} events; p50 / p99) | "
        f"{'; '.join(texts)} | | | p99 <= 50 ms: {'met' if worst[panel] <= 50 else 'missed'} |"
        for panel, texts in cells.items()
    ]


def chart(parts: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    bars: list[tuple[str, float, str]] = []
    sink = parts.get("sink")
    if sink:
        r = sink["runs"]
        bars += [
            ("ours (sink)", r["ours"]["rows_per_s"], "tab:blue"),
            ("Spark JDBC", r["jdbc"]["rows_per_s"], "tab:gray"),
            ("lab INSERT/row", r["lab"]["rows_per_s"], "tab:gray"),
            ("\\copy x1", r["copy_1"]["rows_per_s"], "tab:olive"),
            ("\\copy x2", r["copy_2"]["rows_per_s"], "tab:olive"),
        ]
    e2e = parts.get("end_to_end")
    if e2e:
        bars.append(("ours end to end\n(Kafka->events)", e2e["ingest"]["rows_per_s"], "tab:cyan"))
    ax = axes[0]
    if bars:
        ax.bar([b[0] for b in bars], [b[1] / 1000 for b in bars], color=[b[2] for b in bars])
        for i, b in enumerate(bars):
            ax.text(i, b[1] / 1000, f"{b[1] / 1000:,.0f}k", ha="center", va="bottom", fontsize=8)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_ylabel("thousand rows/s")
    ax.set_title("Throughput into the partitioned events table")
    ax = axes[1]
    fresh = parts.get("freshness")
    if fresh:
        for key, label in (
            ("visible_delay_quantiles_s", "Kafka -> events"),
            ("rollup_delay_quantiles_s", "Kafka -> rollup_events_5min"),
        ):
            values = fresh.get(key, [])  # percentiles 0..100
            if values:
                ax.plot(values, [q / 100 for q in range(len(values))], label=label)
        ax.axvline(2.0, color="red", linestyle="--", linewidth=1, label="target p95 2 s")
        ax.axhline(0.95, color="gray", linestyle=":", linewidth=1)
        ax.legend(fontsize=8)
    ax.set_xlabel("delay from Kafka timestamp (s)")
    ax.set_ylabel("share of events (CDF)")
    ax.set_title("Freshness")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(folder: Path = RESULTS) -> dict[str, Any]:
    parts = load_parts(folder)
    # the machine the benchmarks ran on (the first result's facts), not the report's
    measured = [part["machine"] for part in parts.values() if "machine" in part]
    machine = measured[0] if measured else machine_facts()
    combined = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "benchmarks": {
            # the freshness percentiles (for the chart) stay in freshness.json
            name: {
                k: v for k, v in part.items() if k != "machine" and not k.endswith("_quantiles_s")
            }
            for name, part in parts.items()
        },
    }
    (folder / "results.json").write_text(json.dumps(combined, indent=2, default=str) + "\n")
    table = markdown(parts, machine)
    (folder / "results.md").write_text(table)
    chart(parts, folder / "results.png")
    print(table)
    say(f"wrote results.json, results.md, results.png in {folder}")
    return combined


if __name__ == "__main__":
    main()
