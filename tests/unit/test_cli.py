"""The jobs' and notebooks' shared edge: notebook settings and the produce command's flags."""

from __future__ import annotations

import os
import signal

import pytest

from clickstream_pipeline.core.cli import notebook_setting, stop_requests
from clickstream_pipeline.core.errors import ConfigError
from clickstream_pipeline.traffic import command


class Widgets:
    """Databricks' `dbutils.widgets` as a notebook sees it: create once, then read the value."""

    def __init__(self, chosen: dict[str, str]) -> None:
        self.chosen = chosen
        self.made: dict[str, tuple[str, list[str] | None]] = {}

    def text(self, name: str, default: str) -> None:
        self.made[name] = (default, None)

    def dropdown(self, name: str, default: str, choices: list[str]) -> None:
        self.made[name] = (default, choices)

    def get(self, name: str) -> str:
        default, _ = self.made[name]  # reading a widget never created fails, as on Databricks
        return self.chosen.get(name, default)


class DbUtils:
    def __init__(self, chosen: dict[str, str]) -> None:
        self.widgets = Widgets(chosen)


def test_notebook_settings_are_widgets_on_databricks_and_fixed_elsewhere():
    assert notebook_setting(None, "env", "databricks", "local") == "local"
    dbutils = DbUtils({"trigger": "available_now"})
    assert notebook_setting(dbutils, "env", "databricks", "local") == "databricks"
    choices = ("processing_time", "available_now")
    trigger = notebook_setting(dbutils, "trigger", "processing_time", "available_now", choices)
    assert trigger == "available_now"
    assert dbutils.widgets.made == {
        "env": ("databricks", None),
        "trigger": ("processing_time", list(choices)),
    }


def test_produce_flags_become_send_options():
    args = command.parser().parse_args(
        ["--rate", "500", "--count", "10", "--compression", "auto", "--max-failures", "-1"]
    )
    kafka = command.send_options(args, "clicks", eventhubs=False)
    assert (kafka.topic, kafka.rate, kafka.count, kafka.max_failures) == ("clicks", 500, 10, None)
    assert (kafka.compression, kafka.idempotence) == ("lz4", True)
    hubs = command.send_options(args, "clicks", eventhubs=True)
    assert (hubs.compression, hubs.idempotence) == ("none", False)


def test_produce_flags_refuse_what_cannot_work(tmp_path):
    with pytest.raises(ConfigError, match="cannot be combined"):
        command.write_csv(command.parser().parse_args(["--to-csv", str(tmp_path), "--csv", "x"]))
    with pytest.raises(ConfigError, match="storefront traffic"):
        command.synthetic(command.parser().parse_args(["--tenants", "0"]))
    with pytest.raises(ConfigError, match=r"(?i)no such|not found"):
        command.events(command.parser().parse_args(["--csv", str(tmp_path / "missing.csv")]))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_sets_the_event_and_the_handlers_come_back_after(sig):
    before = signal.getsignal(sig)
    with stop_requests() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), sig)
        assert stop.wait(5)
    assert signal.getsignal(sig) is before
