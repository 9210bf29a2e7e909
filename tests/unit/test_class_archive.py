"""The class archive's file logic: which JVM option a session gets, training and promotion."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clickstream_pipeline.core import class_archive
from clickstream_pipeline.core.class_archive import PART, archive_name, java_option


@pytest.fixture
def jars(tmp_path: Path) -> list[str]:
    paths = [tmp_path / "a.jar", tmp_path / "b.jar"]
    for p in paths:
        p.write_bytes(b"jar")
    return [str(p) for p in paths]


@pytest.fixture
def java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("")
    monkeypatch.setenv("JAVA_HOME", str(home))
    return home / "bin" / "java"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_without_an_archive_the_session_trains_one_into_a_file_of_its_own(tmp_path, jars, java):
    option = java_option(tmp_path / "archive", jars)
    name = archive_name(jars, str(java.resolve()))
    assert option is not None
    assert f"-XX:ArchiveClassesAtExit={tmp_path / 'archive' / name}{PART}{os.getpid()}" in option


def test_a_finished_training_file_is_promoted_and_mapped(tmp_path, jars, java):
    folder = tmp_path / "archive"
    folder.mkdir()
    name = archive_name(jars, str(java.resolve()))
    (folder / f"{name}{PART}{dead_pid()}").write_bytes(b"classes")
    option = java_option(folder, jars)
    assert option is not None and f"-XX:SharedArchiveFile={folder / name}" in option
    assert [p.name for p in folder.iterdir()] == [name]


def test_while_another_process_trains_the_session_runs_without(tmp_path, jars, java):
    folder = tmp_path / "archive"
    folder.mkdir()
    name = archive_name(jars, str(java.resolve()))
    training = folder / f"{name}{PART}{os.getppid()}"  # a live process
    training.write_bytes(b"half")
    assert java_option(folder, jars) is None
    assert training.exists()


def test_a_changed_jar_trains_a_new_archive_and_drops_the_old(tmp_path, jars, java):
    folder = tmp_path / "archive"
    folder.mkdir()
    old = folder / archive_name(jars, str(java.resolve()))
    old.write_bytes(b"classes")
    Path(jars[0]).write_bytes(b"a newer jar")
    option = java_option(folder, jars)
    assert option is not None and "ArchiveClassesAtExit" in option
    assert old.name not in option and not old.exists()


def test_no_java_no_archive(tmp_path, jars, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(class_archive.shutil, "which", lambda _: None)
    assert java_option(tmp_path / "archive", jars) is None
