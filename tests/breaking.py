"""One message per rule of an event model, each breaking that rule and no earlier one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from clickstream_pipeline.core.model import EventModel
from clickstream_pipeline.ingest.rules import Rule, Rules

OVER_THE_MAXIMUM = 64  # bytes: tests run the job with ingest.max_message_bytes above the valid
# messages' and below this one's size (see `breaking_messages`)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _broken_value(rule: Rule, model: EventModel) -> Any:
    """A value of `rule.field` that breaks `rule` (and, for the field, nothing before it)."""
    spec, kind = rule.spec, rule.kind
    now = datetime.now(UTC)
    if kind in ("not_integer", "not_number"):
        return "abc"
    if kind == "out_of_range":
        assert spec is not None
        low, high = spec.bounds(within_type=True)
        return low - 1 if low is not None else high + 1  # type: ignore[operator]
    if kind == "not_boolean":
        return "yes"
    if kind == "not_timestamp" or kind == "bad_time":
        return "yesterday"
    if kind == "not_json":
        return 5
    if kind == "empty":
        return "   "
    if kind == "too_long":
        assert spec is not None and spec.max_length is not None
        return "y" * (spec.max_length + 1)
    if kind == "control_chars":
        return "a\u0001b"
    if kind == "not_text":
        return {"nested": True}
    if kind == "not_allowed":
        return "not-one-of-them"
    if kind == "not_matching":
        return "does-not-match"
    if kind == "time_too_old":
        return _iso(now - timedelta(seconds=model.time.max_past_s + 3600))
    if kind == "time_in_future":
        return _iso(now + timedelta(seconds=model.time.max_future_s + 3600))
    raise ValueError(f"no breaking value for {kind}")


def breaking_messages(
    model: EventModel, valid: dict[str, Any], max_message_bytes: int
) -> dict[str, bytes | None]:
    """Reason -> a message that breaks that rule first, from the `valid` event; the message
    rules' too (too_large: larger than `max_message_bytes`)."""
    out: dict[str, bytes | None] = {}
    for rule in Rules(model).ordered():
        if rule.kind == "empty_message":
            out[rule.reason] = None
        elif rule.kind == "too_large":
            out[rule.reason] = json.dumps({**valid, "pad": "z" * max_message_bytes}).encode()
        elif rule.kind == "invalid_utf8":
            out[rule.reason] = b'{"customer_id": "\xff"}'
        elif rule.kind == "malformed_json":
            out[rule.reason] = b'{"customer_id": 1,'
        elif rule.kind == "unknown_field":
            out[rule.reason] = json.dumps({**valid, "not_in_the_model": 1}).encode()
        elif rule.kind in ("missing", "missing_time"):
            out[rule.reason] = json.dumps(
                {k: v for k, v in valid.items() if k != rule.field}
            ).encode()
        else:
            event = {**valid, rule.field: _broken_value(rule, model)}
            out[rule.reason] = json.dumps(event).encode()
    return out


# A valid event of the shipped example model (`conf/models/web_analytics.toml`).
WEB_EVENT: dict[str, Any] = {
    "customer_id": 42,
    "session_id": 7,
    "event_type": "Purchase",
    "page_url": "https://shop.example/p/1",
    "referrer": "https://search.example/?q=shoes",
    "utm_source": "Newsletter",
    "utm_medium": "email",
    "utm_campaign": "Winter Sale",
    "duration_ms": 1500,
    "revenue": 19.99,
    "logged_in": True,
    "context": {"screen": {"w": 1280, "h": 720}, "tags": ["a", "b"]},
    "event_id": 1,
}
