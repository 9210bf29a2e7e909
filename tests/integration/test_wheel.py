"""The wheel: one import package with its SQL and conf, entry points that work from a clean venv."""

import subprocess
import sys
import zipfile
from pathlib import Path

ENTRY_POINTS = (
    "clickstream-bootstrap",
    "clickstream-ingest",
    "clickstream-produce",
    "clickstream-query",
    "clickstream-load",
    "clickstream-dead-letters",
    "clickstream-smoke",
    "clickstream-dashboard",
)


def test_wheel_holds_one_import_package_with_sql_and_conf(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"clickstream_pipeline"}
    assert "clickstream_pipeline/conf/local.toml" in names
    assert "clickstream_pipeline/conf/databricks.toml" in names
    assert "clickstream_pipeline/jobs/ingest.py" in names
    assert "clickstream_pipeline/sql/roles/dashboard_readonly.sql" in names
    assert "clickstream_pipeline/dashboard/assets/dashboard.css" in names
    assert any(
        n.startswith("clickstream_pipeline/sql/migrations/") and n.endswith(".sql") for n in names
    )
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    # Spark and Delta only through the `local` extra: a Databricks runtime brings its own.
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist:")]
    spark_lines = [line for line in requires if "pyspark" in line or "delta-spark" in line]
    assert spark_lines
    assert all('extra == "local"' in line for line in spark_lines), spark_lines


def test_entry_points_answer_help_from_a_clean_venv(wheel: Path, tmp_path: Path):
    env_dir = tmp_path / "venv"
    # uv: the same resolution as pip, from its cache in a second instead of pip's half minute
    uv = [sys.executable, "-m", "uv"]
    subprocess.run([*uv, "venv", "-q", str(env_dir)], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [*uv, "pip", "install", "-q", "--python", str(env_dir / "bin" / "python"), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    for name in ENTRY_POINTS:
        done = subprocess.run(
            [str(env_dir / "bin" / name), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{name}: {done.stderr}"
        assert f"usage: {name}" in done.stdout
