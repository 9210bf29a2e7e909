"""The package's floors: each subsystem imports only from its own floor or the ones below."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "libs" / "clickstream_pipeline"
# a subpackage may import from those on a lower or the same floor
FLOORS = {"core": 0, "warehouse": 1, "traffic": 2, "dashboard": 2, "ingest": 3}
DATA = {"sql", "conf"}  # SQL and TOML files the wheel carries, read by any floor


def imported_subpackages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "clickstream_pipeline" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_module_sits_in_a_subsystem() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} == set(FLOORS)


def test_imports_run_downward_only() -> None:
    upward = []
    for package, floor in FLOORS.items():
        for module in sorted((PACKAGE / package).glob("*.py")):
            for target in imported_subpackages(module):
                if target not in DATA and FLOORS.get(target, floor + 1) > floor:
                    upward.append(f"{package}/{module.name} -> {target}")
    assert upward == []
