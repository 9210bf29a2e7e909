"""The event generator: distributions match their configuration, messages match the lab's shape."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter, defaultdict

import pytest

from clickstream_pipeline.traffic.generator import (
    LAB_FIELDS,
    LAB_HEADER,
    EventClock,
    StorefrontConfig,
    encode_event,
    lab_uniform_events,
    read_csv_events,
    storefront_events,
    write_csv_files,
)
from clickstream_pipeline.traffic.producer import TokenBucket

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def take(events, n):
    return list(itertools.islice(events, n))


@pytest.fixture(scope="module")
def storefront():
    cfg = StorefrontConfig(tenants=200, tenant_zipf=1.2, mean_session_events=5.0)
    return cfg, take(storefront_events(cfg, seed=3), 200_000)


def test_tenant_shares_follow_the_configured_zipf(storefront):
    cfg, events = storefront
    counts = Counter(e[0] for e in events)
    expected = cfg.tenant_shares()
    observed = [counts.get(k, 0) / len(events) for k in range(1, cfg.tenants + 1)]
    # customer 1 is the biggest tenant, customer 2 next: ratio 2**1.2 = 2.30
    assert counts[1] / counts[2] == pytest.approx(2**1.2, rel=0.1)
    for rank in range(5):
        assert observed[rank] == pytest.approx(expected[rank], rel=0.08)
    total_variation = sum(abs(o - e) for o, e in zip(observed, expected, strict=True)) / 2
    assert total_variation < 0.03
    assert max(counts, key=counts.__getitem__) == 1


@pytest.mark.parametrize("mean", [2.0, 5.0, 12.0])
def test_session_lengths_have_the_configured_mean_and_shape(mean):
    cfg = StorefrontConfig(mean_session_events=mean, concurrent_sessions=16)
    events = take(storefront_events(cfg, seed=5), 150_000)
    by_session: dict[int, list] = defaultdict(list)
    for event in events:
        by_session[event[5]].append(event)
    # sessions still open at the end are cut short: leave out the last ones started
    closed = sorted(by_session)[: -cfg.concurrent_sessions * 3]
    lengths = [len(by_session[s]) for s in closed]
    assert sum(lengths) / len(lengths) == pytest.approx(mean, rel=0.05)
    # 1 + geometric: P(length 1) = 1 / mean
    assert lengths.count(1) / len(lengths) == pytest.approx(1 / mean, abs=0.02)


def test_a_session_is_one_tenant_device_browser_and_country_starting_with_a_view(storefront):
    _cfg, events = storefront
    by_session: dict[int, list] = defaultdict(list)
    for event in events:
        by_session[event[5]].append(event)
    assert len(by_session) > 20_000
    for session in by_session.values():
        assert len({(e[0], e[2], e[3], e[4]) for e in session}) == 1
        assert session[0][1] == "view"
    types = Counter(e[1] for e in events)
    assert {"click", "buy", "scroll", "download", "view", "add_to_cart", "search"} <= set(types)
    # buy only after add_to_cart in the same session
    for session in by_session.values():
        kinds = [e[1] for e in session]
        if "buy" in kinds:
            assert "add_to_cart" in kinds[: kinds.index("buy")]


def test_countries_browsers_and_heavy_hitter_devices(storefront):
    cfg, events = storefront
    sessions = {e[5]: e for e in events}.values()
    n = len(sessions)
    countries = Counter(e[2] for e in sessions)
    browsers = Counter(e[3] for e in sessions)
    total_c = sum(cfg.countries.values())
    for country in ("United States", "China", "India"):
        assert countries[country] / n == pytest.approx(cfg.countries[country] / total_c, abs=0.015)
    assert browsers["chrome"] / n == pytest.approx(cfg.browsers["chrome"], abs=0.015)
    hot = sum(1 for e in sessions if e[4] <= cfg.hot_devices)
    assert hot / n == pytest.approx(cfg.hot_device_share, abs=0.01)
    devices = Counter(e[4] for e in events)
    # the top device is a heavy hitter with far more events than a typical device
    top, top_count = devices.most_common(1)[0]
    assert top <= cfg.hot_devices
    assert top_count > 50 * (len(events) / len(devices))


def test_lab_uniform_draws_are_the_labs():
    events = take(lab_uniform_events(seed=1), 140_000)
    assert min(e[0] for e in events) == 1 and max(e[0] for e in events) == 1000
    assert min(e[4] for e in events) >= 1 and max(e[4] for e in events) <= 10_000
    assert min(e[5] for e in events) >= 1 and max(e[5] for e in events) <= 100_000
    countries = Counter(e[2] for e in events)
    assert set(countries) == {
        "United States",
        "United Kingdom",
        "India",
        "France",
        "Germany",
        "China",
    }
    assert countries["China"] / len(events) == pytest.approx(2 / 7, abs=0.01)
    assert countries["India"] / len(events) == pytest.approx(1 / 7, abs=0.01)
    types = Counter(e[1] for e in events)
    assert set(types) == {"click", "buy", "scroll", "download"}
    assert all(c / len(events) == pytest.approx(0.25, abs=0.01) for c in types.values())
    assert set(Counter(e[3] for e in events)) == {"chrome", "firefox", "safari", "opera"}


def test_a_seed_makes_traffic_reproducible():
    assert take(storefront_events(seed=9), 1000) == take(storefront_events(seed=9), 1000)
    assert take(storefront_events(seed=9), 1000) != take(storefront_events(seed=10), 1000)
    assert take(lab_uniform_events(seed=9), 1000) == take(lab_uniform_events(seed=9), 1000)


def test_messages_are_the_labs_compact_json_plus_time_and_id():
    event = (70, "scroll", "Côte d'Ivoire", 'o"pera', 6677, 11893)
    lab = encode_event(event)
    assert (
        lab
        == (
            '{"customer_id":70,"event_type":"scroll","country":"Côte d\'Ivoire",'
            '"browser":"o\\"pera","device_id":6677,"session_id":11893}'
        ).encode()
    )
    full = json.loads(encode_event(event, 1_795_687_200_123, 42))
    assert list(full) == [*LAB_FIELDS, "event_time", "event_id"]
    assert full["event_time"] == "2026-11-26T10:00:00.123Z"
    assert ISO_MS.match(full["event_time"])
    # the cached second's text is not reused for another second
    assert json.loads(encode_event(event, 5, 1))["event_time"] == "1970-01-01T00:00:00.005Z"
    assert full["event_id"] == 42


def test_late_events_are_minutes_to_hours_old_at_the_configured_share():
    now = 1_800_000_000.0
    clock = EventClock(late_share=0.25, late_min_s=60, late_max_s=7200, seed=1, now=lambda: now)
    times = [clock.event_time_ms() for _ in range(20_000)]
    late = [t for t in times if t < now * 1000]
    assert len(late) / len(times) == pytest.approx(0.25, abs=0.015)
    assert clock.late == len(late)
    assert all(now * 1000 - 7_200_000 <= t <= now * 1000 - 60_000 for t in late)
    assert max(late) - min(late) > 3_600_000  # spread over hours, so out of order
    on_time = EventClock(late_share=0.0, now=lambda: now)
    assert {on_time.event_time_ms() for _ in range(100)} == {int(now * 1000)}


def test_token_bucket_holds_the_rate():
    t = [0.0]

    def sleep(s):
        t[0] += s

    bucket = TokenBucket(100.0, burst=5, clock=lambda: t[0], sleep=sleep)
    for _ in range(1005):
        bucket.take()
    assert t[0] == pytest.approx(10.0, rel=0.01)  # 5 from the initial burst, 1000 at 100/s


def test_csv_files_round_trip_every_row(tmp_path):
    events = take(storefront_events(seed=2), 3 * 500)
    written = write_csv_files(tmp_path, iter(events), files=3, rows=500)
    assert [p.name for p, _ in written] == ["1.csv", "2.csv", "3.csv"]
    assert all(n == 500 for _, n in written)
    first = (tmp_path / "1.csv").read_text().splitlines()
    assert first[0] == LAB_HEADER and len(first) == 501
    # replay: every data row, the first of each file included (the lab's producer skipped it)
    assert list(read_csv_events([p for p, _ in written])) == events


def test_csv_replay_reads_columns_by_header_and_rejects_bad_files(tmp_path):
    shuffled = tmp_path / "a.csv"
    shuffled.write_text(
        "session_id,device_id,browser,country,event_type,customer_id\n9,8,opera,France,buy,7\n"
    )
    assert list(read_csv_events([shuffled])) == [(7, "buy", "France", "opera", 8, 9)]
    wrong = tmp_path / "b.csv"
    wrong.write_text("customer,event_type\n1,buy\n")
    with pytest.raises(ValueError, match="header must be"):
        list(read_csv_events([wrong]))
    bad_row = tmp_path / "c.csv"
    bad_row.write_text(f"{LAB_HEADER}\n1,buy,France,opera,8,9\nx,buy,France,opera,8,9\n")
    with pytest.raises(ValueError, match="line 3"):
        list(read_csv_events([bad_row]))
