"""Event models for the unit tests: the lab's with other bounds, and one of every field type."""

from __future__ import annotations

from clickstream_pipeline.core.model import LAB, EventModel, parse_model


def lab_with(max_length: int | None = None, max_past: str = "", max_future: str = "") -> EventModel:
    """The lab model with its text fields' maximum length or its time bounds changed."""
    fields = {
        name: spec.model_copy(update={"max_length": max_length})
        if max_length is not None and spec.type == "text"
        else spec
        for name, spec in LAB.fields.items()
    }
    time = LAB.time.model_copy(
        update={
            "max_past": max_past or LAB.time.max_past,
            "max_future": max_future or LAB.time.max_future,
        }
    )
    return LAB.model_copy(update={"fields": fields, "time": time})


EVERY_TYPE = parse_model(
    """
[event]
tenant = "account"
id = "event_id"
unknown_fields = "dead_letter"
time = { field = "sent_at", formats = ["iso8601"], max_past = "1d", max_future = "1m" }

[event.fields]
account = { type = "text", required = true, trim = true, lower = true, max_length = 20 }
page = { type = "text", required = true, max_length = 200, pattern = "/[a-z0-9/_-]*" }
channel = { type = "text", allowed = ["email", "search", "social"], trim = true, lower = true }
duration_ms = { type = "integer", min = 0, max = 86400000 }
revenue = { type = "double", min = 0 }
logged_in = { type = "boolean", required = true }
event_id = { type = "bigint", min = 1 }
amount = { type = "numeric", precision = 10, scale = 2, min = 0 }
seen_at = { type = "timestamp" }
context = { type = "jsonb" }
""",
    name="every_type",
)
