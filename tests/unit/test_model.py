"""The event model: loaded and checked once, with errors naming the key; rules derive from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickstream_pipeline.core.config import ConfigError, load_config
from clickstream_pipeline.core.model import LAB, ModelError, load_model, parse_model
from clickstream_pipeline.ingest.rules import model_rules
from tests.unit.models import EVERY_TYPE

GOOD = """
[event]
tenant = "account"
[event.fields]
account = { type = "bigint", required = true, min = 1 }
"""


def test_the_lab_model_gives_the_labs_rules_in_the_labs_order():
    ids = [
        f"{rule}_{f}"
        for f in ("customer_id", "device_id", "session_id")
        for rule in ("missing", "not_integer", "out_of_range")
    ]
    text = [
        f"{rule}_{f}"
        for f in ("event_type", "country", "browser")
        for rule in ("missing", "empty", "too_long", "control_chars", "not_text")
    ]
    assert [r.reason for r in model_rules(LAB)] == [
        "empty_message",
        "too_large",
        "invalid_utf8",
        "malformed_json",
        *ids,
        *text,
        "not_integer_event_id",
        "out_of_range_event_id",
        "bad_event_time",
        "event_time_too_old",
        "event_time_in_future",
    ]
    assert LAB.event_columns[:1] == ("event_time",) and LAB.event_columns[-1] == "source_event_id"
    assert (LAB.time.max_past_s, LAB.time.max_future_s) == (2 * 86400, 15 * 60)


def test_a_model_is_loaded_by_name_or_by_path(tmp_path: Path):
    assert load_model("lab") is LAB
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    mine = load_model(str(path))
    assert (mine.name, mine.tenant, mine.event_columns[1]) == ("mine", "account", "account")
    with pytest.raises(ModelError, match="no event model 'nope'; packaged models: lab"):
        load_model("nope")


@pytest.mark.parametrize(
    ("field", "named"),
    [
        ('{ type = "uuid" }', r"event\.fields\.page\.type: Input should be 'bigint'"),
        ('{ type = "jsonb", min = 1 }', r"event\.fields\.page: .*min applies to numbers"),
        ('{ type = "double", scale = 2 }', r"event\.fields\.page: .*scale applies to numeric"),
        ('{ type = "numeric", precision = 4, scale = 6 }', r"scale 6 is more than precision 4"),
        ('{ type = "numeric", precision = 39 }', r"precision: Input should be less than or"),
        ('{ type = "text", min = 1 }', r"event\.fields\.page: .*min applies to numbers, not text"),
        ('{ type = "bigint", lower = true }', r"event\.fields\.page: .*lower applies to text"),
        ('{ type = "integer", min = 0.5 }', r"min of an integer must be a whole number"),
        ('{ type = "double", min = 2, max = 1 }', r"min 2 is more than max 1"),
        ('{ type = "text", pattern = "(" }', r"pattern is not a regular expression"),
        ('{ type = "text", colour = "red" }', r"event\.fields\.page\.colour: Extra inputs"),
    ],
)
def test_a_field_that_does_not_hold_is_refused_naming_its_key(field: str, named: str):
    with pytest.raises(ModelError, match=named):
        parse_model(GOOD + f"page = {field}\n")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (GOOD.replace('tenant = "account"', 'tenant = "user"'), "tenant 'user' is not one of"),
        (GOOD.replace("required = true, ", ""), "tenant 'account' must be a required"),
        (GOOD.replace("[event]", '[event]\nid = "event_id"'), "id 'event_id' is not one of the"),
        (GOOD + '"Page URL" = { type = "text" }\n', "'Page URL' is not a safe SQL identifier"),
        (GOOD + 'kafka_offset = { type = "bigint" }\n', "takes the name of a column"),
        (GOOD + 'event_time = { type = "text" }\n', "also in fields"),
        (GOOD + 'account = { type = "text" }\n', "not valid TOML"),  # one name twice
        (GOOD.replace("[event]", '[event]\ntime = { max_past = "2 days" }'), "not a duration"),
        ("[events]\n", r"expected one \[event\] table"),
        (GOOD + '[retention]\nevents = "1h"\n', r"retention.events 1h is shorter than time\.max_"),
        (GOOD + '[retention]\nrollups = "1 year"\n', r"retention\.rollups: '1 year' is not a dur"),
        (GOOD + '[retention]\nrollup = { "a-b" = "1d" }\n', r"retention\.rollup: 'a-b' is not a"),
        (GOOD + '[retention]\nraw = "1d"\n', r"retention\.raw: Extra inputs are not permitted"),
        (GOOD.replace("[event]", '[event]\nretention = { events = "9d" }'), r"beside \[event\]"),
    ],
)
def test_a_model_that_does_not_hold_is_refused(text: str, named: str):
    with pytest.raises(ModelError, match=named):
        parse_model(text)


def test_every_field_type_has_its_rules_in_the_models_order():
    reasons = [r.reason for r in model_rules(EVERY_TYPE)]
    assert reasons[4] == "unknown_field"  # the message's rules, then unknown fields
    assert reasons[5:11] == [
        "missing_account",
        "empty_account",
        "too_long_account",
        "control_chars_account",
        "not_text_account",
        "missing_page",
    ]
    assert {"not_matching_page", "not_allowed_channel", "not_integer_duration_ms"} <= set(reasons)
    assert {"not_number_revenue", "out_of_range_revenue", "not_boolean_logged_in"} <= set(reasons)
    assert {"not_number_amount", "not_timestamp_seen_at", "not_json_context"} <= set(reasons)
    assert "empty_channel" not in reasons  # an optional text may be sent empty
    assert reasons[-3:] == ["bad_sent_at", "sent_at_too_old", "sent_at_in_future"]


def test_the_ingest_config_names_its_model_and_refuses_the_bounds_it_moved():
    assert load_config("local", environ={}).ingest.model == "lab"
    with pytest.raises(ConfigError, match=r"ingest\.model: .*no event model 'nope'"):
        load_config("local", ["ingest.model=nope"], environ={})
    with pytest.raises(ConfigError, match="max_text_length moved to the event model"):
        load_config("local", ["ingest.max_text_length=10"], environ={})


def test_retention_keeps_everything_unless_told_and_a_rollup_may_keep_its_own():
    default = parse_model(GOOD).retention
    assert (default.events, default.rollup_keep("rollup_events_5min")) == (None, None)
    assert default.bookkeeping == "7d"  # bounded unless told otherwise
    told = parse_model(
        GOOD
        + '[retention]\nevents = "30d"\nrollups = "400d"\nrollup = { rollup_events_5min = "35d" }\n'
    ).retention
    assert told.events == "30d"
    assert told.rollup_keep("rollup_events_5min") == "35d"
    assert told.rollup_keep("rollup_events_1hr") == "400d"
    assert LAB.retention.events == "30d" and LAB.retention.rollups == "400d"
