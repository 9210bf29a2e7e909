"""Each `[ingest]` setting is defined once, in the config (`IngestConfig`): the batches read the
config itself, and the executors' plain settings (`SinkSettings`, `Rules`) take their values and
their defaults from it."""

from __future__ import annotations

import dataclasses
import pickle
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from clickstream_pipeline.core.config import INGEST_DEFAULTS, Config, IngestConfig
from clickstream_pipeline.core.fields import EVENTS_SCHEMA, EVENTS_TABLE
from clickstream_pipeline.core.secrets import Secrets
from clickstream_pipeline.ingest.rules import Rules
from clickstream_pipeline.ingest.sink import SinkSettings
from clickstream_pipeline.ingest.stream import IngestSettings, ingest_settings

SECRETS = Secrets({"database": SecretStr("jdbc:postgresql://127.0.0.1:5432/db?user=u")}, "test")
# SinkSettings fields no [ingest] setting gives: the batch's, the database's, the ledger's
NOT_SETTINGS = {
    "connect_kwargs",
    "schema_name",
    "table_name",
    "sink",
    "batch_id",
    "ledger",
    "max_backoff_s",
    "topic_ids",
    "default_topic_id",
}


@pytest.fixture
def changed(tmp_path: Path) -> dict[str, Any]:
    """Every [ingest] setting at a value other than its default."""
    model = tmp_path / "other.toml"  # the lab's fields under another name: another model
    lab = resources.files("clickstream_pipeline.conf.models").joinpath("lab.toml")
    model.write_text(lab.read_text(encoding="utf-8"), encoding="utf-8")
    return {
        "query_name": "other-ingest",
        "trigger": "available_now",
        "trigger_interval": "5 seconds",
        "model": str(model),
        "rollup_after_batch": True,
        "rollup_in_background": False,
        "max_tasks": 3,
        "tenant_freshness_top": 0,
        "validation": "spark",
        "sink_copy_format": "csv",
        "sink_max_attempts": 2,
        "sink_backoff_s": 0.5,
        "max_message_bytes": 1000,
        "arrow_batch_bytes": 0,
        "task_buffer_bytes": 1000,
        "metrics_port": 9999,
        "topic_generation": "second",
        "rollup_drain_timeout_s": 1.0,
    }


def test_the_changed_config_changes_every_ingest_setting(changed):
    assert set(changed) == set(IngestConfig.model_fields), "add the new setting to `changed`"
    assert [k for k, v in changed.items() if getattr(INGEST_DEFAULTS, k) == v] == []


def test_every_ingest_setting_reaches_the_batches_and_the_executors(changed):
    cfg = Config(env="test", ingest=IngestConfig(**changed))
    settings = ingest_settings(cfg, SECRETS)

    assert settings.ingest == cfg.ingest
    for plain in (settings.target, settings.rules):
        defaulted = [
            f.name
            for f in dataclasses.fields(plain)
            if f.name not in NOT_SETTINGS and getattr(plain, f.name) == f.default
        ]
        assert defaulted == [], f"pass the setting on to {type(plain).__name__} in ingest_settings"


def test_the_batches_settings_copy_no_ingest_setting():
    # they read [ingest] from `ingest`; a field of their own with a default would be a copy
    defaulted = [
        f.name
        for f in dataclasses.fields(IngestSettings)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    ]
    assert defaulted == ["metrics"]


def test_the_executors_settings_default_to_the_configs_defaults():
    settings = ingest_settings(Config(env="test"), SECRETS)

    assert settings.rules == Rules()
    assert settings.target == SinkSettings(
        settings.target.connect_kwargs, EVENTS_SCHEMA, EVENTS_TABLE, "", -1
    )


def test_the_settings_pickle(changed):
    settings = ingest_settings(Config(env="test", ingest=IngestConfig(**changed)), SECRETS)

    assert pickle.loads(pickle.dumps(settings)) == settings
