"""Clickstream events, generated or read from lab-format CSV files; no Kafka, no database.

Two synthetic models share one interface (an endless iterator of `Event` tuples):

* `lab_uniform_events`: the lab's data files, independent uniform draws (customer 1..1000,
  device 1..10000, session 1..100000, China drawn twice as often; FACTS.md);
* `storefront_events`: traffic shaped like a real storefront (`StorefrontConfig`): tenants with
  Zipf-like shares, sessions of several events on one device, browser and country, a few
  heavy-hitter devices, realistic country and browser shares, a small funnel of event types.

`encode_event` turns an event into the lab's compact JSON (six fields in the lab's order, plus
optional `event_time` and `event_id`); `write_csv_files` writes lab-format files like
`data/1.csv`..`10.csv`; `read_csv_events` replays such files, every data row.

`model_events` draws events of any event model (dicts, each field by its type, rules and
`[generate]` entry); `model_messages` stamps them with an event time and id and encodes them.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from clickstream_pipeline.core.fields import LAB_FIELDS
from clickstream_pipeline.core.model import (
    DEFAULT_CARDINALITY,
    INTEGER_TYPES,
    EventModel,
    FieldSpec,
    GenerateSpec,
    ModelError,
    text_problem,
)

# customer_id, event_type, country, browser, device_id, session_id
Event = tuple[int, str, str, str, int, int]

LAB_HEADER = ",".join(LAB_FIELDS)
LAB_EVENT_TYPES = ("click", "buy", "scroll", "download")
LAB_COUNTRIES = ("United States", "United Kingdom", "India", "France", "Germany", "China", "China")
LAB_BROWSERS = ("chrome", "firefox", "safari", "opera")


@dataclass(frozen=True)
class StorefrontConfig:
    """Shape of the storefront traffic. Customer 1 is the largest tenant, 2 the next, ..."""

    tenants: int = 1000
    tenant_zipf: float = 1.1  # share of tenant k is proportional to 1 / k**tenant_zipf
    devices: int = 200_000
    hot_devices: int = 50  # heavy hitters: device ids 1..hot_devices (bots, kiosks, shared PCs)
    hot_device_share: float = 0.05  # share of sessions on a heavy-hitter device
    mean_session_events: float = 6.0  # session length: 1 + geometric, this mean
    max_session_events: int = 200
    concurrent_sessions: int = 64  # sessions interleaved in the stream
    countries: dict[str, float] = field(
        default_factory=lambda: {
            "United States": 0.38,
            "China": 0.12,
            "India": 0.11,
            "United Kingdom": 0.08,
            "Germany": 0.08,
            "France": 0.06,
            "Brazil": 0.06,
            "Japan": 0.05,
            "Canada": 0.04,
            "Côte d'Ivoire": 0.02,
        }
    )
    browsers: dict[str, float] = field(
        default_factory=lambda: {
            "chrome": 0.64,
            "safari": 0.19,
            "edge": 0.05,
            "firefox": 0.04,
            "samsung": 0.04,
            "opera": 0.03,
            "other": 0.01,
        }
    )
    # Event types after a session's first event (always `view`); `buy` only after `add_to_cart`.
    event_types: dict[str, float] = field(
        default_factory=lambda: {
            "view": 0.34,
            "click": 0.24,
            "scroll": 0.18,
            "search": 0.09,
            "add_to_cart": 0.08,
            "download": 0.03,
            "buy": 0.04,
        }
    )

    def __post_init__(self) -> None:
        if self.tenants < 1 or self.devices < 1 or self.concurrent_sessions < 1:
            raise ValueError("tenants, devices and concurrent_sessions must be at least 1")
        if not 0 <= self.hot_devices <= self.devices:
            raise ValueError("hot_devices must be between 0 and devices")
        if not 0.0 <= self.hot_device_share <= 1.0:
            raise ValueError("hot_device_share must be between 0 and 1")
        if self.mean_session_events < 1 or self.max_session_events < self.mean_session_events:
            raise ValueError("need 1 <= mean_session_events <= max_session_events")
        if self.tenant_zipf < 0:
            raise ValueError("tenant_zipf must be >= 0")
        for name in ("countries", "browsers", "event_types"):
            weights = getattr(self, name)
            if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                raise ValueError(f"{name} needs positive weights")
        if "view" not in self.event_types:
            raise ValueError("event_types must contain 'view' (a session's first event)")

    def tenant_shares(self) -> list[float]:
        """Expected share of events per tenant, customer 1 first."""
        weights = [1.0 / k**self.tenant_zipf for k in range(1, self.tenants + 1)]
        total = sum(weights)
        return [w / total for w in weights]


class _Weighted:
    """Fast weighted choice: bisect on cumulative weights."""

    def __init__(self, items: Sequence[str], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cum = list(itertools.accumulate(weights))
        self.total = self.cum[-1]

    def draw(self, rnd: Callable[[], float]) -> str:
        return self.items[bisect.bisect(self.cum, rnd() * self.total)]


def lab_uniform_events(seed: int | None = None) -> Iterator[Event]:
    """The lab's data: independent uniform draws, endless."""
    rng = random.Random(seed)
    rnd = rng.random
    types, countries, browsers = LAB_EVENT_TYPES, LAB_COUNTRIES, LAB_BROWSERS
    while True:
        yield (
            int(rnd() * 1000) + 1,
            types[int(rnd() * 4)],
            countries[int(rnd() * 7)],
            browsers[int(rnd() * 4)],
            int(rnd() * 10000) + 1,
            int(rnd() * 100000) + 1,
        )


def storefront_events(
    config: StorefrontConfig | None = None, seed: int | None = None
) -> Iterator[Event]:
    """Storefront traffic, endless: interleaved sessions of skewed tenants (see module doc)."""
    cfg = config or StorefrontConfig()
    rng = random.Random(seed)
    rnd = rng.random
    tenant_cum = list(itertools.accumulate(cfg.tenant_shares()))
    hot_cum = list(
        itertools.accumulate(1.0 / k for k in range(1, cfg.hot_devices + 1))
    )  # heavy hitters are Zipf-skewed too
    countries = _Weighted(list(cfg.countries), list(cfg.countries.values()))
    browsers = _Weighted(list(cfg.browsers), list(cfg.browsers.values()))
    after_view = {k: v for k, v in cfg.event_types.items() if k != "buy"}
    no_cart = _Weighted(list(after_view), list(after_view.values()))
    # with something in the cart, buying becomes likelier
    with_cart_weights = dict(cfg.event_types)
    with_cart_weights["buy"] = with_cart_weights.get("buy", 0.0) * 4
    with_cart = _Weighted(list(with_cart_weights), list(with_cart_weights.values()))
    # session length 1 + geometric(p) has mean 1 + (1 - p) / p
    extra = cfg.mean_session_events - 1.0
    p_stop = 1.0 / (extra + 1.0)
    log_keep = math.log(1.0 - p_stop) if p_stop < 1.0 else 0.0
    next_session = rng.randrange(1, 10**12)  # run-scoped base: unseeded runs rarely collide

    def new_session() -> list[Any]:
        nonlocal next_session
        length = 1 + int(math.log(1.0 - rnd()) / log_keep) if log_keep else 1
        if cfg.hot_devices and rnd() < cfg.hot_device_share:
            device = bisect.bisect(hot_cum, rnd() * hot_cum[-1]) + 1
        else:
            device = int(rnd() * cfg.devices) + 1
        customer = min(bisect.bisect(tenant_cum, rnd()), cfg.tenants - 1) + 1
        session = next_session
        next_session += 1
        # [remaining events, customer, country, browser, device, session, cart, first]
        return [
            min(length, cfg.max_session_events),
            customer,
            countries.draw(rnd),
            browsers.draw(rnd),
            device,
            session,
            False,
            True,
        ]

    active = [new_session() for _ in range(cfg.concurrent_sessions)]
    slots = len(active)
    while True:
        i = int(rnd() * slots)
        s = active[i]
        if s[7]:
            event_type = "view"
            s[7] = False
        else:
            event_type = (with_cart if s[6] else no_cart).draw(rnd)
            if event_type == "add_to_cart":
                s[6] = True
        yield (s[1], event_type, s[2], s[3], s[4], s[5])
        s[0] -= 1
        if s[0] <= 0:
            active[i] = new_session()


def synthetic_events(
    lab_uniform: bool, seed: int | None = None, config: StorefrontConfig | None = None
) -> Iterator[Event]:
    return lab_uniform_events(seed) if lab_uniform else storefront_events(config, seed)


# --- JSON messages -------------------------------------------------------------------------

_JSON_STRINGS: dict[str, str] = {}


def _json_str(value: str) -> str:
    encoded = _JSON_STRINGS.get(value)
    if encoded is None:
        encoded = json.dumps(value, ensure_ascii=False)
        if len(_JSON_STRINGS) < 10_000:
            _JSON_STRINGS[value] = encoded
    return encoded


_last_second = -1
_last_prefix = ""


def iso_utc_ms(epoch_ms: int) -> str:
    """2026-11-26T10:00:00.123Z for epoch milliseconds (the second's text is cached)."""
    global _last_second, _last_prefix
    second, ms = divmod(epoch_ms, 1000)
    if second != _last_second:
        _last_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = second
    return f"{_last_prefix}.{ms:03d}Z"


def encode_event(
    event: Event, event_time_ms: int | None = None, event_id: int | None = None
) -> bytes:
    """The lab's compact JSON (its six fields in its order), plus event_time and event_id."""
    text = (
        f'{{"customer_id":{event[0]:d},"event_type":{_json_str(event[1])},'
        f'"country":{_json_str(event[2])},"browser":{_json_str(event[3])},'
        f'"device_id":{event[4]:d},"session_id":{event[5]:d}'
    )
    if event_time_ms is not None:
        text += f',"event_time":"{iso_utc_ms(event_time_ms)}"'
    if event_id is not None:
        text += f',"event_id":{event_id:d}'
    return (text + "}").encode()


@dataclass
class EventClock:
    """Event times: now, or for `late_share` of events minutes to hours in the past.

    Late times are log-uniform between `late_min_s` and `late_max_s` before now, so they
    also arrive out of order with each other.
    """

    late_share: float = 0.0
    late_min_s: float = 60.0
    late_max_s: float = 3 * 3600.0
    seed: int | None = None
    now: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if not 0.0 <= self.late_share <= 1.0:
            raise ValueError("late_share must be between 0 and 1")
        if not 0 < self.late_min_s <= self.late_max_s:
            raise ValueError("need 0 < late_min_s <= late_max_s")
        self._rng = random.Random(None if self.seed is None else self.seed + 1)
        self._log_min = math.log(self.late_min_s)
        self._log_span = math.log(self.late_max_s) - self._log_min
        self.late = 0

    def event_time_ms(self) -> int:
        now = self.now()
        if self.late_share and self._rng.random() < self.late_share:
            self.late += 1
            now -= math.exp(self._log_min + self._rng.random() * self._log_span)
        return int(now * 1000)


# --- events from an event model ------------------------------------------------------------

TABLE_MAX = 100_000  # skewed draws over more values use rejection-inversion, not a table
SYLLABLES = ("ka", "lo", "mi", "nu", "pe", "ra", "so", "ti", "vu", "ze", "ba", "de", "fi", "go")
LOCALES = ("en-US", "en-GB", "de-DE", "fr-FR", "ja-JP", "pt-BR")
SCREENS = ((1920, 1080), (1366, 768), (390, 844), (1536, 864), (412, 915))
TIMESTAMP_SPAN_MS = 3_600_000  # timestamp fields: within the hour before `now`


def zipf_ranks(count: int, skew: float, rng: random.Random) -> Callable[[], int]:
    """Draws of 1..count, k with probability proportional to 1 / k**skew (0: uniform)."""
    rnd = rng.random
    if skew == 0:
        if count > 2**53:
            randrange = rng.randrange
            return lambda: randrange(count) + 1
        return lambda: int(rnd() * count) + 1
    if count > TABLE_MAX:
        return _ZipfRanks(count, skew, rnd).draw
    cum = list(itertools.accumulate(k**-skew for k in range(1, count + 1)))
    total, last, find = cum[-1], count - 1, bisect.bisect
    return lambda: min(find(cum, rnd() * total), last) + 1


def _log1p_over(x: float) -> float:
    return math.log1p(x) / x if abs(x) > 1e-8 else 1 - x * (0.5 - x * (1 / 3 - 0.25 * x))


def _expm1_over(x: float) -> float:
    return math.expm1(x) / x if abs(x) > 1e-8 else 1 + x * 0.5 * (1 + x / 3 * (1 + 0.25 * x))


class _ZipfRanks:
    """Zipf ranks in constant time and memory: rejection-inversion (Hörmann and Derflinger,
    1996), as Apache Commons RNG's `RejectionInversionZipfSampler` draws them."""

    def __init__(self, count: int, skew: float, rnd: Callable[[], float]) -> None:
        self.count, self.skew, self.rnd = count, skew, rnd
        self.h_x1 = self._h_integral(1.5) - 1.0
        self.h_n = self._h_integral(count + 0.5)
        self.s = 2.0 - self._h_integral_inverse(self._h_integral(2.5) - self._h(2.0))

    def _h(self, x: float) -> float:
        return math.exp(-self.skew * math.log(x))

    def _h_integral(self, x: float) -> float:
        log_x = math.log(x)
        return _expm1_over((1.0 - self.skew) * log_x) * log_x

    def _h_integral_inverse(self, x: float) -> float:
        return math.exp(_log1p_over(max(x * (1.0 - self.skew), -1.0)) * x)

    def draw(self) -> int:
        while True:
            u = self.h_n + self.rnd() * (self.h_x1 - self.h_n)
            x = self._h_integral_inverse(u)
            k = min(max(int(x + 0.5), 1), self.count)
            if k - x <= self.s or u >= self._h_integral(k + 0.5) - self._h(k):
                return k


def word(rank: int) -> str:
    """A short pronounceable word per rank (1: "loka"), distinct for each."""
    n, letters = rank + len(SYLLABLES) - 1, []
    while n:
        n, digit = divmod(n, len(SYLLABLES))
        letters.append(SYLLABLES[digit])
    return "".join(reversed(letters))


def _text_draw(
    name: str, spec: FieldSpec, rule: GenerateSpec, ranks: Callable[[], int]
) -> Callable[[], Any]:
    if rule.template is not None:
        parts = rule.template.split("{n}")
        return lambda: str(ranks()).join(parts)
    listed = rule.values or spec.allowed
    count = rule.text_count(spec)
    if listed is None:
        if count > TABLE_MAX:
            raise ModelError(f"generate.{name}: give values or a template for {count} texts")
        words = [word(k) for k in range(1, count + 1)]
        if spec.max_length is not None and len(words[-1]) > spec.max_length:
            words = [f"{k:x}" for k in range(1, count + 1)]
        for sample in (words[0], words[-1]):
            if (problem := text_problem(spec, sample)) is not None:
                raise ModelError(
                    f"generate.{name}: generated text {sample!r} {problem}; give values or a "
                    "template"
                )
        listed = tuple(words)
    items = (None, *listed[:count])  # by rank
    return lambda: items[ranks()]


def _number_bounds(spec: FieldSpec) -> tuple[float, float]:
    low = spec.min if spec.min is not None else (spec.max - 1000 if spec.max is not None else 0.0)
    return low, spec.max if spec.max is not None else low + 1000


def _integer_draw(spec: FieldSpec, rule: GenerateSpec, rng: random.Random) -> Callable[[], int]:
    low, count = rule.integer_values(spec)
    if rule.skew == 0 and count <= 2**53:
        rnd = rng.random
        return lambda: low + int(rnd() * count)
    ranks = zipf_ranks(count, rule.skew, rng)
    base = low - 1
    return lambda: base + ranks()


def _numeric_draw(name: str, spec: FieldSpec, rnd: Callable[[], float]) -> Callable[[], Any]:
    """Whole units of the scale, as a JSON number: exact, so rounding never moves it."""
    unit = 10**spec.scale
    largest = min(10**spec.precision - 1, 10**15)  # exact as a double, within precision
    low, high = _number_bounds(spec)
    first, last = max(math.ceil(low * unit), -largest), min(math.floor(high * unit), largest)
    if first > last:
        raise ModelError(f"generate.{name}: no numeric({spec.precision},{spec.scale}) value")
    count = last - first + 1
    if spec.scale == 0:
        return lambda: first + int(rnd() * count)
    return lambda: (first + int(rnd() * count)) / unit


def _field_draw(
    name: str, spec: FieldSpec, rule: GenerateSpec, rng: random.Random, now_ms: int
) -> Callable[[], Any]:
    """Draws of one field's values, each valid by its rules."""
    rnd = rng.random
    if spec.type in INTEGER_TYPES:
        return _integer_draw(spec, rule, rng)
    if spec.type == "text":
        return _text_draw(name, spec, rule, zipf_ranks(rule.text_count(spec), rule.skew, rng))
    if spec.type == "double":
        low, high = _number_bounds(spec)
        span = high - low
        return lambda: low + rnd() * span
    if spec.type == "numeric":
        return _numeric_draw(name, spec, rnd)
    if spec.type == "boolean":
        return lambda: rnd() < 0.5
    if spec.type == "timestamp":
        return lambda: iso_utc_ms(now_ms - int(rnd() * TIMESTAMP_SPAN_MS))
    if spec.type == "jsonb":
        ranks = zipf_ranks(rule.cardinality or DEFAULT_CARDINALITY, rule.skew, rng)
        return lambda: _json_object(ranks())
    raise ModelError(f"generate.{name}: no generator for type {spec.type}")


def _json_object(rank: int) -> dict[str, Any]:
    width, height = SCREENS[rank % len(SCREENS)]
    return {
        "variant": rank,
        "locale": LOCALES[rank % len(LOCALES)],
        "screen": {"width": width, "height": height},
    }


def model_events(
    model: EventModel, seed: int | None = None, now: float | None = None
) -> Iterator[dict[str, Any]]:
    """Endless events of `model`: every field but the id drawn by its type, its rules and its
    `[generate]` entry, optional fields left out at their `null_share`. No event time or id
    (`model_messages` adds them); `now` (default: the clock) anchors timestamp fields.
    ModelError at once if a field cannot be drawn validly."""
    rng = random.Random(seed)
    now_ms = int((time.time() if now is None else now) * 1000)
    plan = []
    for name, spec in model.fields.items():
        if name != model.id:
            rule = model.generate.get(name, GenerateSpec())
            plan.append((name, _field_draw(name, spec, rule, rng, now_ms), rule.null_share))
    return _events(plan, rng.random)


def _events(
    plan: list[tuple[str, Callable[[], Any], float]], rnd: Callable[[], float]
) -> Iterator[dict[str, Any]]:
    while True:
        event = {}
        for name, draw, null_share in plan:
            if not null_share or rnd() >= null_share:
                event[name] = draw()
        yield event


def model_messages(
    events: Iterable[dict[str, Any]], model: EventModel, clock: EventClock | None
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) per event: keyed by its tenant, compact JSON, stamped (as the lab's events
    are) with the clock's event time and an id counted from 1, unless `clock` is None."""
    encode = msgspec.json.Encoder().encode
    tenant, time_field, id_field = model.tenant, model.time.field, model.id
    iso = "iso8601" in model.time.formats
    if clock is None:
        for event in events:
            yield str(event[tenant]).encode(), encode(event)
        return
    for event_id, event in enumerate(events, 1):
        ms = clock.event_time_ms()
        event[time_field] = iso_utc_ms(ms) if iso else ms
        if id_field is not None:
            event[id_field] = event_id
        yield str(event[tenant]).encode(), encode(event)


# --- CSV files -----------------------------------------------------------------------------


def write_csv_files(
    directory: str | Path,
    events: Iterator[Event],
    files: int = 10,
    rows: int = 200_000,
    on_rows: Callable[[int], None] | None = None,
) -> list[tuple[Path, int]]:
    """Write `1.csv`..`<files>.csv` (lab header, `rows` data rows each) from one event stream."""
    if files < 1 or rows < 0:
        raise ValueError("files must be >= 1 and rows >= 0")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, int]] = []
    chunk = 10_000
    for number in range(1, files + 1):
        path = out / f"{number}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(LAB_FIELDS)
            left = rows
            while left:
                n = min(chunk, left)
                writer.writerows(itertools.islice(events, n))
                left -= n
                if on_rows:
                    on_rows(n)
        written.append((path, rows))
    return written


def csv_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; a directory stands for its *.csv files (1.csv, 2.csv, ..., 10.csv)."""
    result: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(path.glob("*.csv"), key=_natural_key)
            if not found:
                raise FileNotFoundError(f"no *.csv files in {path}")
            result.extend(found)
        elif path.is_file():
            result.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return result


def _natural_key(path: Path) -> tuple[int, int | str]:
    return (0, int(path.stem)) if path.stem.isdigit() else (1, path.stem)


def csv_column_order(path: Path, header: Sequence[str] | None = None) -> list[int]:
    """Positions of the lab's six fields in the file's header; ValueError if it is not theirs."""
    if header is None:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), [])
    names = [h.strip() for h in header]
    if sorted(names) != sorted(LAB_FIELDS):
        raise ValueError(f"{path}: header must be {LAB_HEADER}, got {','.join(names) or 'none'}")
    return [names.index(f) for f in LAB_FIELDS]


def read_csv_events(paths: Sequence[Path]) -> Iterator[Event]:
    """Every data row of lab-format CSV files (columns in any order; header required)."""
    for path in paths:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            order = csv_column_order(path, next(reader, []))
            c, t, co, b, d, s = order
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    yield (int(row[c]), row[t], row[co], row[b], int(row[d]), int(row[s]))
                except (ValueError, IndexError):
                    raise ValueError(
                        f"{path}, line {line}: expected {len(LAB_FIELDS)} fields with integer "
                        "customer_id, device_id and session_id"
                    ) from None
