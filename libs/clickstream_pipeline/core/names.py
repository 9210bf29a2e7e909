"""Names and durations as a model writes them: SQL identifiers and `30s`, `15m`, `6h`, `2d`."""

from __future__ import annotations

import re

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")  # safe unquoted: lower case, at most 63
DURATION = re.compile(r"([0-9]+)(s|m|h|d)")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Columns the pipeline writes itself: no field may take their names.
RESERVED_COLUMNS = frozenset(
    {
        "event_id",
        "ingested_at",
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "source_event_id",
        "kafka_timestamp",
        "reject_reason",
        "raw_key",
        "raw_value",
        "properties",
        "corrupt_record",  # Spark's reader and the worker's decoder read `_corrupt_record`
    }
)


def duration_s(text: str) -> int:
    match = DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 6h or 2d")
    return int(match[1]) * SECONDS[match[2]]
