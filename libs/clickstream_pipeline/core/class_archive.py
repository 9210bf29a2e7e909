"""A class-data-sharing archive of a local driver JVM's classes (JDK 13+ dynamic CDS).

A local session loads tens of thousands of classes from Spark's and the connectors' jars.
Mapping them from an archive instead of reading and verifying them saves about 2.5 s of session
start and 2.5 s of a query's start and first batch here (`benchmarks/startup.py`). Set-up trains
one (`python -m clickstream_pipeline.ingest.warm_up`, a local workload); otherwise the first
session without an archive writes one when its JVM exits (`-XX:ArchiveClassesAtExit`, to a file
of its own, while other sessions run without). A later session promotes it and maps it
(`-XX:SharedArchiveFile`). The archive's
name carries a digest of the class path (each jar's path, size and mtime) and of the java binary,
so a new jar or JDK trains a new one. A JVM that cannot use an archive runs without it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

PART = ".part-"


def java_binary() -> str | None:
    """The java PySpark launches: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    return str(Path(found).resolve()) if found and Path(found).exists() else None


def archive_name(class_path: list[str], java: str) -> str:
    digest = hashlib.sha256()
    for item in [java, *class_path]:
        stat = Path(item).stat()
        digest.update(f"{item}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return f"classes-{digest.hexdigest()[:20]}.jsa"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer_pid(path: Path) -> int | None:
    """The pid of the process whose JVM writes `path` (a training file), else None."""
    _, sep, pid = path.name.partition(PART)
    return int(pid) if sep and pid.isdigit() else None


def _tidy(folder: Path, archive: Path) -> bool:
    """Promote a finished training file of `archive`, delete every other finished file; true
    while another process trains `archive`."""
    training = False
    for path in sorted(folder.glob("classes-*.jsa*")):
        pid = _writer_pid(path)
        if path == archive or (pid is not None and _alive(pid)):
            training |= path != archive and path.name.startswith(archive.name)
            continue  # in use, or its JVM may still be writing it
        if path.name.startswith(archive.name) and not archive.exists() and path.stat().st_size:
            os.replace(path, archive)
        else:
            path.unlink(missing_ok=True)
    return training


def java_option(folder: Path, class_path: list[str]) -> str | None:
    """The JVM options that map this class path's archive, or train one at exit; None when
    there is no java, the folder cannot be written, or another process is training it."""
    java = java_binary()
    if java is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        archive = folder / archive_name(class_path, java)
        training = _tidy(folder, archive)
    except OSError:
        return None
    if training and not archive.exists():
        return None
    quiet = "-Xlog:cds*=error"  # not the classes it skips (signed jars, old bytecode)
    if archive.exists():
        return f"-XX:SharedArchiveFile={archive} {quiet}"
    return f"-XX:ArchiveClassesAtExit={archive}{PART}{os.getpid()} {quiet}"
