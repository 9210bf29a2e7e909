"""OpenMetrics for the producer and the bulk loader (`--metrics-port`): what the running job has
done so far, read from its live counts at each scrape (a `prometheus_client` collector), so
sending and loading pay nothing per message. Rates are Prometheus's `rate()` over the counters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class _Live(Collector):
    """The families of the job's current run, one reader per kind of job."""

    def __init__(self) -> None:
        self.readers: dict[str, Callable[[], Iterable[Metric]]] = {}

    def collect(self) -> Iterable[Metric]:
        for read in list(self.readers.values()):
            yield from read()


REGISTRY = CollectorRegistry(auto_describe=False)
_LIVE = _Live()
REGISTRY.register(_LIVE)
_served: set[int] = set()


def serve(port: int | None) -> bool:
    """Serve the registry on http://127.0.0.1:<port>/metrics (once per port); False if the
    port is taken (logged: the job runs on without metrics) or none was given."""
    if port is None:
        return False
    if port not in _served:
        try:
            start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
        except OSError as exc:
            log.warning("metrics port %d: %s; running without metrics", port, exc)
            return False
        _served.add(port)
        log.info("metrics on http://127.0.0.1:%d/metrics", port)
    return True


def watch_producer(
    topic: str,
    sent: Callable[[], int],
    acknowledged: Callable[[], int],
    failed: Callable[[], int],
    queued: Callable[[], int],
) -> None:
    """The producer's counts, read when scraped."""

    def read() -> Iterable[Metric]:
        messages = CounterMetricFamily(
            "clickstream_produce_messages",
            "Messages of this run by outcome: sent (handed to the client), acknowledged "
            "(by the broker), failed",
            labels=["topic", "outcome"],
        )
        for outcome, count in (("sent", sent), ("acknowledged", acknowledged), ("failed", failed)):
            messages.add_metric([topic, outcome], count())
        waiting = GaugeMetricFamily(
            "clickstream_produce_queued_messages",
            "Messages sent but not yet acknowledged or failed",
            labels=["topic"],
        )
        waiting.add_metric([topic], queued())
        return [messages, waiting]

    _LIVE.readers["producer"] = read


def watch_loader(
    table: str, rows: Callable[[], int], bytes_read: Callable[[], int], files: Callable[[], int]
) -> None:
    """The bulk loader's counts, read when scraped."""

    def read() -> Iterable[Metric]:
        families = []
        for name, help_text, count in (
            ("clickstream_load_rows", "Rows of this run's files committed into the table", rows),
            ("clickstream_load_bytes", "Bytes of CSV read so far (committed or not)", bytes_read),
            ("clickstream_load_files", "Files of this run committed", files),
        ):
            family = CounterMetricFamily(name, help_text, labels=["table"])
            family.add_metric([table], count())
            families.append(family)
        return families

    _LIVE.readers["loader"] = read
