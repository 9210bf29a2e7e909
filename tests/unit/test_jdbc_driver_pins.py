"""Every pin of PostgreSQL's JDBC driver in the repo is 42.7.12 or later: 42.7.4-42.7.11 let a
server downgrade SCRAM channel binding (CVE-2026-54291), and CVE-2026-42198 is fixed in 42.7.11."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import PROJECT_DIR

OLDEST_SAFE = (42, 7, 12)
SKIPPED_DIRS = {
    ".git",
    ".venv",
    ".venv-lane",
    ".stack",
    "build",
    "dist",
    "node_modules",
    "__pycache__",
}
TEXT_SUFFIXES = {".xml", ".yml", ".yaml", ".json", ".toml", ".py", ".sh", ".md", ".cfg", ".txt"}
# Maven coordinates (Databricks libraries, --packages, dependency:get) and jar file names
COORDINATES = re.compile(r"org\.postgresql:postgresql:([0-9][0-9A-Za-z.-]*)")
JAR = re.compile(r"\bpostgresql-(\d+\.\d+\.\d+)[0-9A-Za-z.-]*\.jar")
POM = "{http://maven.apache.org/POM/4.0.0}"


def repo_files(root: Path) -> list[Path]:
    return [
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix in TEXT_SUFFIXES | {".ipynb"}
        and not SKIPPED_DIRS & set(path.relative_to(root).parts[:-1])
        and "results" not in path.relative_to(root).parts  # benchmark output, not pins
    ]


def pom_pins(pom: Path) -> list[str]:
    """The versions of org.postgresql:postgresql the pom declares, its properties resolved."""
    tree = ET.parse(pom)
    properties = {
        element.tag.removeprefix(POM): (element.text or "").strip()
        for element in tree.getroot().iterfind(f"{POM}properties/*")
    }
    versions = []
    for dependency in tree.getroot().iter(f"{POM}dependency"):
        group = dependency.findtext(f"{POM}groupId", "").strip()
        artifact = dependency.findtext(f"{POM}artifactId", "").strip()
        if (group, artifact) == ("org.postgresql", "postgresql"):
            version = dependency.findtext(f"{POM}version", "").strip()
            versions.append(re.sub(r"\$\{([^}]+)\}", lambda m: properties[m.group(1)], version))
    return versions


def driver_pins(root: Path) -> dict[str, list[str]]:
    """Every pinned driver version, by the file (relative to `root`) that pins it."""
    pins: dict[str, list[str]] = {}
    for path in repo_files(root):
        text = path.read_text(errors="replace")
        found = COORDINATES.findall(text) + JAR.findall(text)
        if path.name == "pom.xml":
            found += pom_pins(path)
        if found:
            pins[str(path.relative_to(root))] = found
    return pins


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def test_every_pin_of_the_postgresql_jdbc_driver_is_past_the_channel_binding_fix():
    pins = driver_pins(PROJECT_DIR)
    assert "jvm/pom.xml" in pins  # the driver the local Spark and Kafka Connect get
    too_old = {
        where: versions
        for where, versions in pins.items()
        if any(version_tuple(v) < OLDEST_SAFE for v in versions)
    }
    assert too_old == {}, f"PostgreSQL JDBC driver below 42.7.12: {too_old}"


def test_the_databricks_jobs_load_no_jdbc_driver():
    """The ingest writes by binary COPY: no job of the bundle or the Jobs JSON needs one."""
    pins = driver_pins(PROJECT_DIR)
    deployed = [
        p for p in pins if p == "databricks.yml" or p.startswith(("resources/", "databricks/"))
    ]
    assert deployed == []
