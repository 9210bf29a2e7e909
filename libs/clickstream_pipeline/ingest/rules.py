"""The validation rules of an event model, in the order they run: one list that Spark's rules
(`transforms`, the reference) and the Python worker's (`arrow_validation`) both fold over, so
"the first broken rule names the dead letter" holds on both paths by construction.

A rule is data: its reason (the dead letter's name), what it checks (`kind`), the field and its
spec. Each path maps every kind to its own check; a kind the worker cannot decide plainly it
leaves to Spark (the record is handed back undecided).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clickstream_pipeline.core.config import INGEST_DEFAULTS
from clickstream_pipeline.core.model import INTEGER_TYPES, LAB, EventModel, FieldSpec

RuleKind = Literal[
    "empty_message",
    "too_large",
    "invalid_utf8",
    "malformed_json",
    "unknown_field",
    "missing",
    "not_integer",
    "not_number",
    "not_boolean",
    "not_timestamp",
    "not_json",
    "out_of_range",
    "empty",
    "too_long",
    "control_chars",
    "not_text",
    "not_allowed",
    "not_matching",
    "bad_time",
    "missing_time",
    "time_too_old",
    "time_in_future",
]
# A message over the maximum size is a dead letter ("too_large") keeping only its first bytes.
TOO_LARGE_KEPT_BYTES = 64 * 1024


@dataclass(frozen=True)
class Rule:
    reason: str  # the dead letter's reason
    kind: RuleKind
    field: str = ""  # the payload field it reads ("" for the message's rules)
    spec: FieldSpec | None = None


@dataclass(frozen=True)
class Rules:
    """What validation needs: the event model and the largest message (config `[ingest]`;
    LAB is its default model, "lab", loaded)."""

    model: EventModel = LAB
    max_message_bytes: int = INGEST_DEFAULTS.max_message_bytes

    @property
    def max_past_s(self) -> int:
        return self.model.time.max_past_s

    @property
    def max_future_s(self) -> int:
        return self.model.time.max_future_s

    def ordered(self) -> list[Rule]:
        return model_rules(self.model)


def field_rules(name: str, spec: FieldSpec) -> list[Rule]:
    """One field's rules, in the order they run."""

    def rule(kind: RuleKind) -> Rule:
        return Rule(f"{kind}_{name}", kind, name, spec)

    rules = [rule("missing")] if spec.required else []
    if spec.type in INTEGER_TYPES:
        return [*rules, rule("not_integer"), rule("out_of_range")]
    if spec.type in ("double", "numeric"):
        return [*rules, rule("not_number"), rule("out_of_range")]
    if spec.type == "boolean":
        return [*rules, rule("not_boolean")]
    if spec.type == "timestamp":
        return [*rules, rule("not_timestamp")]
    if spec.type == "jsonb":
        return [*rules, rule("not_json")]
    if spec.required:  # an optional field may be sent empty ("" as sent)
        rules.append(rule("empty"))
    if spec.max_length is not None:
        rules.append(rule("too_long"))
    if not spec.control_chars:
        rules.append(rule("control_chars"))
    rules.append(rule("not_text"))
    if spec.allowed is not None:
        rules.append(rule("not_allowed"))
    if spec.pattern is not None:
        rules.append(rule("not_matching"))
    return rules


def model_rules(model: EventModel) -> list[Rule]:
    """Every rule of `model`, in order: the message's, each field's, then the event time's."""
    time = model.time.field
    rules = [
        Rule("empty_message", "empty_message"),
        Rule("too_large", "too_large"),
        Rule("invalid_utf8", "invalid_utf8"),
        Rule("malformed_json", "malformed_json"),
    ]
    if model.unknown_fields == "dead_letter":
        rules.append(Rule("unknown_field", "unknown_field"))
    for name, spec in model.fields.items():
        rules += field_rules(name, spec)
    rules.append(Rule(f"bad_{time}", "bad_time", time))
    if model.time.fallback is None:
        rules.append(Rule(f"missing_{time}", "missing_time", time))
    rules += [
        Rule(f"{time}_too_old", "time_too_old", time),
        Rule(f"{time}_in_future", "time_in_future", time),
    ]
    return rules
