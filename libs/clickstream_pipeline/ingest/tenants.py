"""Freshness per tenant (customer): from the sink tasks' "tenant" rows, each customer's rows and
Kafka-timestamp-to-commit delay in a micro-batch, kept for the busiest and the slowest
customers and summed for all the others, so that what is stored and exported stays bounded
however many tenants write."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class TenantFreshness:
    customer_id: int | None  # None: every other customer of the batch, together
    customers: int  # 1, or how many the None row stands for
    rows: int
    max_delay_s: float  # its oldest row: Kafka timestamp -> commit
    min_delay_s: float  # its newest row

    @property
    def label(self) -> str:
        return "other" if self.customer_id is None else str(self.customer_id)


def tenant_freshness(
    rows: Iterable[Any], committed_at: datetime, top: int
) -> list[TenantFreshness]:
    """The `top` busiest customers and the `top` slowest (by their oldest row's delay), one entry
    each, slowest first, then one entry for the rest. `rows` are the sink tasks' "tenant" rows
    (Spark Rows or mappings with customer_id, rows_in, oldest, newest; a customer may have one
    per partition)."""
    merged: dict[int, list[Any]] = {}
    for r in rows:
        oldest, newest = utc(r["oldest"]), utc(r["newest"])
        seen = merged.get(r["customer_id"])
        if seen is None:
            merged[r["customer_id"]] = [r["rows_in"], oldest, newest]
        else:
            seen[0] += r["rows_in"]
            seen[1], seen[2] = min(seen[1], oldest), max(seen[2], newest)
    if top <= 0 or not merged:
        return []

    def delay(at: datetime) -> float:
        return (committed_at - at).total_seconds()

    busiest = sorted(merged, key=lambda c: (-merged[c][0], c))[:top]
    slowest = sorted(merged, key=lambda c: (merged[c][1], c))[:top]
    chosen = set(busiest) | set(slowest)
    out = [
        TenantFreshness(c, 1, merged[c][0], delay(merged[c][1]), delay(merged[c][2]))
        for c in chosen
    ]
    out.sort(key=lambda t: (-t.max_delay_s, t.customer_id))
    rest = [merged[c] for c in merged if c not in chosen]
    if rest:
        out.append(
            TenantFreshness(
                None,
                len(rest),
                sum(r[0] for r in rest),
                delay(min(r[1] for r in rest)),
                delay(max(r[2] for r in rest)),
            )
        )
    return out


def utc(at: datetime) -> datetime:
    """A collected timestamp in UTC: PySpark returns them naive, in the driver's local time."""
    return at.astimezone(UTC)
