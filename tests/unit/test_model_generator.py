"""Events generated from an event model: the shape `[generate]` asks for, and valid by its rules."""

from __future__ import annotations

import itertools
import json
import random
import re
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace

import pyarrow as pa
import pytest

from clickstream_pipeline.core.errors import ConfigError
from clickstream_pipeline.core.model import LAB, ModelError, load_model, parse_model, with_generate
from clickstream_pipeline.ingest.arrow_validation import check_batch
from clickstream_pipeline.ingest.transforms import Rules, validate
from clickstream_pipeline.traffic import command
from clickstream_pipeline.traffic.generator import (
    EventClock,
    StorefrontConfig,
    encode_event,
    model_events,
    model_messages,
    storefront_events,
    zipf_ranks,
)
from clickstream_pipeline.traffic.producer import send_events
from tests.unit.models import EVERY_TYPE
from tests.unit.test_transforms import kafka_rows

NOW = 1_790_000_000.0

SHOP = """
[event]
tenant = "account"
id = "event_id"
[event.fields]
account = { type = "bigint", required = true, min = 1 }
kind = { type = "text", required = true, allowed = ["view", "buy"] }
page = { type = "text", required = true, max_length = 40, pattern = "https?://.+" }
channel = { type = "text", trim = true, lower = true, max_length = 10 }
score = { type = "integer", min = 1, max = 100 }
ratio = { type = "double" }
event_id = { type = "bigint", min = 1 }
"""
GENERATE = """
[generate]
account = { cardinality = 50, skew = 1.2 }
kind = { skew = 2.0 }
page = { template = "https://shop.example/p/{n}", cardinality = 20 }
channel = { values = ["email", "search", "social"], null_share = 0.3 }
"""


def take(events, n):
    return list(itertools.islice(events, n))


def zipf_shares(count: int, skew: float) -> list[float]:
    weights = [k**-skew for k in range(1, count + 1)]
    total = sum(weights)
    return [w / total for w in weights]


@pytest.fixture(scope="module")
def shop_events():
    return take(model_events(parse_model(SHOP + GENERATE), seed=7, now=NOW), 200_000)


def test_cardinality_skew_and_null_share_are_honoured(shop_events):
    n = len(shop_events)
    tenants = Counter(e["account"] for e in shop_events)
    assert sorted(tenants) == list(range(1, 51))
    assert tenants[1] / tenants[2] == pytest.approx(2**1.2, rel=0.08)
    expected = zipf_shares(50, 1.2)
    variation = sum(abs(tenants[k] / n - expected[k - 1]) for k in range(1, 51)) / 2
    assert variation < 0.02
    kinds = Counter(e["kind"] for e in shop_events)  # allowed, the first likeliest
    assert kinds["view"] / n == pytest.approx(zipf_shares(2, 2.0)[0], rel=0.02)
    pages = Counter(e["page"] for e in shop_events)  # a template, uniform
    assert set(pages) == {f"https://shop.example/p/{k}" for k in range(1, 21)}
    assert max(pages.values()) / min(pages.values()) < 1.15
    channels = Counter(e.get("channel") for e in shop_events)
    assert channels[None] / n == pytest.approx(0.3, abs=0.01)
    assert set(channels) == {None, "email", "search", "social"}
    # no entry: integers uniform within min..max, every value drawn
    assert set(Counter(e["score"] for e in shop_events)) == set(range(1, 101))
    assert all("event_id" not in e for e in shop_events[:100])  # the producer numbers it


@pytest.mark.parametrize("count", [300, 2_000_000])  # a table, and rejection-inversion
def test_zipf_ranks_follow_the_law_with_or_without_a_table(count: int):
    draw = zipf_ranks(count, 1.1, random.Random(1))
    ranks = Counter(draw() for _ in range(300_000))
    assert min(ranks) >= 1 and max(ranks) <= count
    total = sum(k**-1.1 for k in range(1, count + 1))
    for k in (1, 2, 3, 10):
        assert ranks[k] / 300_000 == pytest.approx(k**-1.1 / total, rel=0.06)
    above = sum(v for k, v in ranks.items() if k > 100) / 300_000
    assert above == pytest.approx(sum(k**-1.1 for k in range(101, count + 1)) / total, rel=0.04)


def test_a_seed_makes_model_events_reproducible():
    model = load_model("web_analytics")
    first = take(model_events(model, seed=11, now=NOW), 2000)
    assert take(model_events(model, seed=11, now=NOW), 2000) == first
    assert take(model_events(model, seed=12, now=NOW), 2000) != first


def kafka_batch(messages: list[tuple[bytes, bytes]]) -> pa.RecordBatch:
    n = len(messages)
    return pa.RecordBatch.from_pydict(
        {
            "key": pa.array([k for k, _ in messages], pa.binary()),
            "value": pa.array([v for _, v in messages], pa.binary()),
            "topic": pa.array(["clicks"] * n, pa.string()),
            "partition": pa.array([0] * n, pa.int32()),
            "offset": pa.array(range(n), pa.int64()),
            "timestamp": pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def generated(model, n: int, seed: int = 5) -> list[tuple[bytes, bytes]]:
    clock = EventClock(late_share=0.2, seed=seed)
    return take(model_messages(model_events(model, seed), model, clock), n)


EVERY_TYPE_PAGES = with_generate(EVERY_TYPE, {"page": {"template": "/p/{n}", "cardinality": 9}})
MODELS = {
    "web_analytics": load_model("web_analytics"),
    "lab": LAB,
    "every_type": EVERY_TYPE_PAGES,
    "shop": parse_model(SHOP + GENERATE),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_generated_event_is_valid_by_the_models_rules(name: str):
    model = MODELS[name]
    messages = generated(model, 20_000)
    now_us = int(datetime.now(UTC).timestamp() * 1e6)
    checked = check_batch(kafka_batch(messages), Rules(model), now_us)
    assert checked.undecided.num_rows == 0
    reasons = Counter(checked.validated.column("reject_reason").to_pylist())
    assert reasons == {None: len(messages)}
    seen = Counter(k for _, v in messages for k in json.loads(v))
    assert set(seen) == set(model.payload_fields)  # every field drawn, the time and id stamped
    assert seen[model.time.field] == len(messages)
    for field, rule in model.generate.items():
        assert (seen[field] < len(messages)) == (rule.null_share > 0), field


@pytest.mark.parametrize("name", list(MODELS))
def test_spark_finds_the_generated_events_valid(spark, name: str):
    model = MODELS[name]
    values = [v for _, v in generated(model, 300, seed=9)]
    rows = validate(kafka_rows(spark, values), Rules(model)).select("reject_reason").collect()
    assert [r.reject_reason for r in rows] == [None] * len(values)


def test_web_analytics_events_look_like_web_traffic():
    model = load_model("web_analytics")
    events = take(model_events(model, seed=3, now=NOW), 50_000)
    types = Counter(e["event_type"] for e in events)
    assert types.most_common(1)[0][0] == "page_view" and types["purchase"] < 0.1 * len(events)
    assert all(re.fullmatch(r"https://shop\.example/p/\d+", e["page_url"]) for e in events)
    assert 0.03 < sum("revenue" in e for e in events) / len(events) < 0.07
    revenues = [e["revenue"] for e in events if "revenue" in e]
    assert all(isinstance(r, float) and round(r, 2) == r and r >= 0 for r in revenues)
    contexts = [e["context"] for e in events if "context" in e]
    assert contexts and all(isinstance(c["screen"], dict) for c in contexts)


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ("nope = { cardinality = 3 }", r"generate\.nope: 'nope' is not one of the fields"),
        ('account = { colour = "red" }', r"generate\.account\.colour: Extra inputs"),
        ("account = { skew = -1 }", r"generate\.account\.skew: Input should be greater"),
        ("account = { null_share = 0.5 }", r"generate\.account\.null_share: account is required"),
        ('score = { template = "s{n}" }', r"generate\.score\.template: applies to text, not"),
        ("ratio = { skew = 1.0 }", r"generate\.ratio\.skew: applies to integers, text and jsonb"),
        ("score = { cardinality = 200 }", r"generate\.score\.cardinality: 200 values from 1 pass"),
        ("kind = { cardinality = 3 }", r"generate\.kind\.cardinality: 3 is more than the 2"),
        ('kind = { values = ["view", "sell"] }', r"generate\.kind\.values: 'sell' is not allowed"),
        ('page = { template = "ftp://{n}" }', r"generate\.page\.template: 'ftp://1' does not"),
        ('page = { template = "https://x/" }', r"generate\.page: template has no \{n\}"),
        ('page = { values = ["https://a"], template = "https://{n}" }', r"give one"),
        (
            'channel = { template = "channel-{n}" }',
            r"generate\.channel\.template: 'channel-1000' is longer than max_length 10",
        ),
        ("event_id = { cardinality = 5 }", r"generate\.event_id: the producer numbers the event"),
    ],
)
def test_a_generate_entry_that_does_not_fit_is_refused_naming_its_key(table: str, named: str):
    with pytest.raises(ModelError, match=named):
        parse_model(SHOP + "[generate]\n" + table + "\n")


def test_generate_is_a_table_of_its_own_and_fields_that_cannot_be_drawn_are_named():
    with pytest.raises(ModelError, match=r"event\.generate: \[generate\] is a table beside"):
        parse_model(SHOP.replace('id = "event_id"', 'id = "event_id"\ngenerate = {}'))
    with pytest.raises(ModelError, match=r"expected one \[event\] table"):
        parse_model(SHOP + "[other]\n")
    # a pattern the default words do not match: give a template or values
    with pytest.raises(ModelError, match=r"generate\.page: generated text 'loka' does not match"):
        model_events(parse_model(SHOP))


class FakeProducer:
    """What `send_messages` uses of a Kafka producer; keeps every message produced."""

    sent: list[tuple[bytes, bytes]]

    def __init__(self, _conf) -> None:
        self.sent = []
        FakeProducer.last = self

    def list_topics(self, topic, timeout):
        info = SimpleNamespace(error=None, partitions={0: SimpleNamespace(leader=0)})
        return SimpleNamespace(topics={topic: info})

    def produce(self, _topic, value, key, on_delivery):
        self.sent.append((key, value))

    def poll(self, _timeout=0):
        return 0

    def flush(self, _timeout=0):
        return 0

    def __len__(self) -> int:
        return 0


def produce(flags: list[str]) -> list[tuple[bytes, bytes]]:
    args = command.parser().parse_args(flags)
    events, _ = command.events(args)
    options = command.send_options(args, "clicks", eventhubs=False)
    stats = send_events({}, events, options, producer_factory=FakeProducer)
    assert stats.ok
    return FakeProducer.last.sent


def test_produce_with_a_model_sends_its_generated_events():
    sent = produce(["--model", "web_analytics", "--count", "500", "--seed", "3", "--no-progress"])
    model = load_model("web_analytics")
    events = [json.loads(v) for _, v in sent]
    assert [e["event_id"] for e in events] == list(range(1, 501))
    assert [k for k, _ in sent] == [str(e["customer_id"]).encode() for e in events]
    assert all(set(e) <= set(model.payload_fields) and "page_url" in e for e in events)
    drawn = take(model_events(model, seed=3), 500)
    assert [{k: e[k] for k in d} for e, d in zip(events, drawn, strict=True)] == drawn
    checked = check_batch(kafka_batch(sent), Rules(model), int(datetime.now(UTC).timestamp() * 1e6))
    assert checked.validated.column("reject_reason").null_count == 500


def test_without_a_model_the_producer_sends_the_labs_messages_as_before():
    storefront = StorefrontConfig(hot_devices=50)
    sent = produce(["--count", "300", "--seed", "4", "--lab-fields", "--no-progress"])
    expected = [encode_event(e) for e in take(storefront_events(storefront, seed=4), 300)]
    assert [v for _, v in sent] == expected
    stamped = produce(["--count", "300", "--seed", "4", "--no-progress"])
    iso = re.compile(rb',"event_time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","event_id":(\d+)}$')
    assert [iso.sub(b"}", v) for _, v in stamped] == expected
    assert [int(iso.search(v)[1]) for _, v in stamped] == list(range(1, 301))


def test_produce_refuses_a_model_with_what_cannot_go_with_it(tmp_path):
    parse = command.parser().parse_args
    with pytest.raises(ConfigError, match="cannot be combined with --csv or --lab-uniform"):
        command.events(parse(["--model", "lab", "--csv", str(tmp_path)]))
    with pytest.raises(ConfigError, match="cannot be combined with --model"):
        command.write_csv(parse(["--model", "lab", "--to-csv", str(tmp_path)]))
    with pytest.raises(ConfigError, match="no event model 'nope'"):
        command.send_options(parse(["--model", "nope"]), "clicks", eventhubs=False)
