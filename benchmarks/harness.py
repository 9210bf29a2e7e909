"""The one harness every benchmark runs on: a `Scenario` returns its figures and declares its
flags, quick sizes, targets and report rows as data; `results.md` and the README's table are
generated from `results.json` (`python -m benchmarks.harness`)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import operator
import os
import platform
import string
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from clickstream_pipeline.core.config import Config, load_config
from clickstream_pipeline.core.secrets import Secrets, resolve_secrets
from clickstream_pipeline.ingest.source import producer_config
from clickstream_pipeline.warehouse.database import ConnectionParams
from devkit.db import CITUS_UNAVAILABLE, TEST_MODELS, bootstrapped_database
from devkit.stack import STACK_SECRETS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RESULTS_JSON = RESULTS / "results.json"
README = ROOT / "README.md"
STUDY_RESULTS = ROOT / "benchmarks" / "studies" / "results"
ENVS = {"local": "", "local-citus": "_citus"}  # config env -> suffix of its results entry
# run order; `on_both` scenarios run again against the Citus cluster (`<name>_citus`)
ORDER = (
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
# run by a make target of their own (`make soak`), reported with the others
OWN_RUN = ("soak",)
TABLE = ("benchmark", "figure", "baseline (same run)", "ratio", "target")
HEADLINE = ("benchmark", "ours", "baseline, same run", "ratio")
SERVER_SECTIONS = (  # results.md's main tables: (title, suffix of the entries)
    ("Plain PostgreSQL 15 (one server)", ""),
    ("Citus 13.2 (coordinator + 2 workers on the same 2 cores; DB CPU over all three)", "_citus"),
)
MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")
CHART_BARS = {  # sink run: its bar's label
    "ours": "ours (sink)",
    "jdbc": "Spark JDBC",
    "lab": "lab INSERT/row",
    "copy_1": "\\copy x1",
    "copy_2": "\\copy x2",
}
CDF_LINES = {  # freshness quantiles: the line's label
    "visible_delay_quantiles_s": "Kafka -> events",
    "rollup_delay_quantiles_s": "Kafka -> rollup_events_5min",
}
OPS = {"<=": operator.le, ">=": operator.ge}
Cells = list[str]


def say(text: str) -> None:
    """A progress line with a timestamp (flushed: run_all streams it)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


@dataclass(frozen=True)
class Target:
    """A goal as data: `figure op bound`, shown as `label: met` (or missed)."""

    name: str
    figure: float | None
    op: str  # "<=" or ">="
    bound: float
    label: str

    @property
    def met(self) -> bool:
        return self.figure is not None and bool(OPS[self.op](self.figure, self.bound))

    def stored(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("label", "figure", "op", "bound", "met")}


@dataclass(frozen=True)
class Scenario:
    """One benchmark: its flags (`--name`: its default, or a type for none) and its quick
    sizes, what it measures (`run`, given the flags and `--env`'s `cfg`, `secrets`, `kafka`),
    its targets and report rows."""

    name: str
    doc: str
    run: Callable[[argparse.Namespace], dict[str, Any]]
    flags: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)  # flag values of --quick
    targets: Callable[[dict[str, Any]], list[Target]] = lambda figures: []
    # report rows: templates of markdown rows (`cell | cell`, figures in `{runs[ours][rows]:,}`)
    rows: tuple[str, ...] | Callable[[dict[str, Any]], list[Cells]] = ()
    on_both: bool = False  # run on plain PostgreSQL and (as `<name>_citus`) on Citus
    title: str = ""  # a section of its own in results.md, with its own `columns`
    columns: tuple[str, ...] = TABLE
    headline: str = ""  # the template of its row of the README's table
    on_citus: str = ""  # the ratio's template, added to the headline's from the Citus entry
    derived: Callable[[dict[str, Any]], dict[str, Any]] = lambda figures: {}  # for the rows
    study: bool = False  # benchmarks/studies/results/<name>.json, not results.json

    def table(self, figures: dict[str, Any]) -> list[Cells]:
        """Its rows of the report, from the stored figures."""
        if callable(self.rows):
            return self.rows(figures)
        values = figures | self.derived(figures)
        return [cells(values, row, len(self.columns)) for row in self.rows]

    def headline_row(self, figures: dict[str, Any], citus: dict[str, Any] | None) -> Cells:
        found = cells(figures | self.derived(figures), self.headline, len(HEADLINE))
        if self.on_citus and citus:
            found[-1] += f" ({cells(citus, self.on_citus, 1)[0]} on Citus)"
        return found

    def main(self, argv: list[str] | None = None) -> dict[str, Any]:
        """Parse the flags, run, check the targets, print the rows, store the figures."""
        parser = argparse.ArgumentParser(description=self.doc.splitlines()[0])
        shrunk = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in self.quick.items())
        parser.add_argument("--quick", action="store_true", help=f"a smoke run: {shrunk}")
        parser.add_argument("--out", type=Path, help="a JSON file of its own, not results.json")
        envs = "local: plain PostgreSQL; local-citus: Citus"
        parser.add_argument("--env", default="local", choices=list(ENVS), help=envs)
        for name, default in self.flags.items():
            flag = "--" + name.replace("_", "-")
            if isinstance(default, type):
                parser.add_argument(flag, type=default)
            else:
                parser.add_argument(flag, type=type(default), default=default)
        args = parser.parse_args(argv)
        if args.quick:
            vars(args).update(self.quick)
        args.cfg, args.secrets = setup_env(args.env)
        args.kafka = producer_config(args.cfg.kafka, args.secrets)
        key = self.name + ENVS[args.env]
        figures = record(self, {"machine": machine_facts(), **self.run(args)})
        print(f"\n{key}:\n" + "\n".join(markdown_table(self.columns, self.table(figures))))
        for name, t in figures["targets"].items():
            met = "met" if t["met"] else "MISSED"
            print(f"target {name}: {met} ({t['figure']} {t['op']} {t['bound']})")
        out = args.out or (STUDY_RESULTS / f"{key}.json" if self.study else None)
        store(key, figures, out)
        return figures


def record(scenario: Scenario, figures: dict[str, Any]) -> dict[str, Any]:
    """The figures with the time of the run and the scenario's targets checked."""
    figures = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    figures["targets"] = {t.name: t.stored() for t in scenario.targets(figures)}
    return figures


def verdict(figures: dict[str, Any], *names: str) -> str:
    """The target cell of a row: `label: met` for each named target."""
    stored = [figures.get("targets", {}).get(name) for name in names]
    return "; ".join(f"{t['label']}: {'met' if t['met'] else 'missed'}" for t in stored if t)


def ms(value: float | None) -> str:
    """Milliseconds; a run cut by the statement timeout (120 s by default) says so."""
    if value is None:
        return "?"
    if value >= 119_000:
        return "timeout (> 120 s)"
    return f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"


def millions(count: int) -> str:
    return f"{count / 1e6:g}M" if count >= 1_000_000 else f"{count:,}"


class _Figures(string.Formatter):
    """`str.format` with more specs: `:ms` (milliseconds), `:M` (2M), and on `targets` the
    verdicts of the targets it names (`{targets:events_p95_le_0_5s; rollup_p95_le_1s}`)."""

    def format_field(self, value: Any, spec: str) -> str:
        if spec in ("ms", "M"):
            return ms(value) if spec == "ms" else millions(value)
        if isinstance(value, dict):
            return verdict({"targets": value}, *(name.strip() for name in spec.split(";")))
        return format(value, spec)


def cells(values: dict[str, Any], row: str, width: int = len(TABLE)) -> Cells:
    """A row's template (`cell | cell`) filled in with the figures, `width` cells."""
    found = [_Figures().vformat(cell.strip(), (), values) for cell in row.split("|")]
    return found + [""] * (width - len(found))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(1, min(len(ordered), int(-(-q * len(ordered) // 100)))) - 1]


def rate(n: float, seconds: float, **more: Any) -> dict[str, Any]:
    """The figures of `n` rows in `seconds`."""
    return {"rows": n, "seconds": round(seconds, 3), "rows_per_s": n / seconds, **more}


# --- the run's environment --------------------------------------------------------------------


def setup_env(env: str = "local") -> tuple[Config, Secrets]:
    os.chdir(ROOT)  # conf/local.toml paths are relative to the project root
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Python workers import benchmark functions by module name
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    cfg = load_config(env, ["spark.master=local[2]", "spark.shuffle_partitions=2"])
    return cfg, resolve_secrets(cfg.secrets, optional=STACK_SECRETS)


def servers() -> dict[str, tuple[Config, Secrets]]:
    """The stack's servers by name, with their config and secrets (no Citus where it cannot run)."""
    if CITUS_UNAVAILABLE.is_file():
        say(f"no Citus cluster ({CITUS_UNAVAILABLE.read_text().strip()}): plain PostgreSQL only")
        return {"postgres": setup_env("local")}
    return {"postgres": setup_env("local"), "citus": setup_env("local-citus")}


def db_params(secrets: Secrets) -> ConnectionParams:
    return ConnectionParams.from_jdbc_url(secrets["database"])


@contextlib.contextmanager
def scratch_db(
    secrets: Secrets, prefix: str, models: Iterable[str] = TEST_MODELS
) -> Iterator[ConnectionParams]:
    """A bootstrapped database of its own on the secrets' server, dropped afterwards."""
    say(f"scratch database {prefix}_*: bootstrapping")
    with bootstrapped_database(db_params(secrets), prefix, models) as db:
        yield db


def machine_facts() -> dict[str, Any]:
    import confluent_kafka
    import pyarrow
    import pyspark

    cpu = Path("/proc/cpuinfo").read_text().split("model name", 1)[-1]
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu.split(":", 1)[-1].split("\n", 1)[0].strip(),
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],  # a shared machine?
        "pyspark": pyspark.__version__,
        "pyarrow": pyarrow.__version__,
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
    }


# --- results.json and what is generated from it -----------------------------------------------


def load(path: Path = RESULTS_JSON) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"benchmarks": {}}


def store(key: str, figures: dict[str, Any], out: Path | None) -> None:
    """Into `out` alone, or as `key`'s entry of results.json."""
    if out is None:
        combined = load()
        combined["benchmarks"][key] = figures
        figures, out = combined, RESULTS_JSON
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=1, default=str) + "\n")
    say(f"wrote {out}")


def scenario(name: str) -> Scenario:
    found: Scenario = importlib.import_module(f"benchmarks.{name}").SCENARIO
    return found


def markdown_table(columns: tuple[str, ...], rows: list[Cells]) -> list[str]:
    lines = (list(columns), ["---"] * len(columns), *rows)
    return ["|" + "|".join(f" {cell} " if cell else " " for cell in line) + "|" for line in lines]


def results_md(combined: dict[str, Any]) -> str:
    entries = combined["benchmarks"]
    m = next(iter(entries.values()))["machine"]  # where the benchmarks ran, not the report
    lines = [
        f"Machine: {m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, {m['os']}; "
        f"Python {m['python']}, PySpark {m['pyspark']} (`local[2]`), "
        f"librdkafka {m['librdkafka']}."
    ]
    scenarios = {name: scenario(name) for name in (*ORDER, *OWN_RUN)}
    for title, suffix in SERVER_SECTIONS:
        rows = []
        for name, s in scenarios.items():
            if not s.title and name + suffix in entries:
                rows += s.table(entries[name + suffix])
        if rows:
            lines += ["", f"### {title}", "", *markdown_table(TABLE, rows)]
    for name, s in scenarios.items():
        if s.title and name in entries:
            lines += ["", f"### {s.title}", "", *markdown_table(s.columns, s.table(entries[name]))]
    return "\n".join(lines) + "\n"


def readme_table(combined: dict[str, Any]) -> str:
    entries = combined["benchmarks"]
    rows = [
        scenario(name).headline_row(entries[name], entries.get(f"{name}_citus"))
        for name in (*ORDER, *OWN_RUN)
        if scenario(name).headline and name in entries
    ]
    return "\n".join(markdown_table(HEADLINE, rows)) + "\n"


def with_readme_table(readme: str, table: str) -> str:
    start, end = MARKERS
    head, rest = readme.split(start, 1)
    return f"{head}{start}\n{table}{end}{rest.split(end, 1)[1]}"


def generated(combined: dict[str, Any]) -> dict[Path, str]:
    """Every file generated from results.json, with the text it should have."""
    return {
        RESULTS / "results.md": results_md(combined),
        README: with_readme_table(README.read_text(), readme_table(combined)),
    }


def chart(entries: dict[str, Any], path: Path) -> None:
    """Throughput bars (sink and end to end) and the freshness CDF, from results.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    runs = entries.get("sink", {}).get("runs", {})
    bars = [(label, runs[k]["rows_per_s"]) for k, label in CHART_BARS.items() if k in runs]
    if e2e := entries.get("end_to_end"):
        bars.append(("ours end to end\n(Kafka->events)", e2e["ingest"]["rows_per_s"]))
    left.bar([b[0] for b in bars], [b[1] / 1000 for b in bars], color="tab:blue")
    left.tick_params(axis="x", labelrotation=30, labelsize=8)
    left.set(ylabel="thousand rows/s", title="Throughput into the partitioned events table")
    fresh = entries.get("freshness", {})
    for key, label in CDF_LINES.items():
        values = fresh.get(key, [])  # percentiles 0..100
        right.plot(values, [q / 100 for q in range(len(values))], label=label)
    right.axvline(0.5, color="red", linestyle="--", linewidth=1, label="target p95 0.5 s")
    right.legend(fontsize=8)
    cdf = "share of events (CDF)"
    right.set(xlabel="delay from Kafka timestamp (s)", ylabel=cdf, title="Freshness")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(combined: dict[str, Any] | None = None) -> None:
    """Write results.md, the README's table and results.png from results.json."""
    combined = combined or load()
    for path, text in generated(combined).items():
        path.write_text(text)
        say(f"wrote {path.relative_to(ROOT)}")
    chart(combined["benchmarks"], RESULTS / "results.png")


if __name__ == "__main__":
    report()
