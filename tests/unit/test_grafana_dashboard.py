"""The Grafana dashboard (docs/grafana/ingest.json) asks only for metrics the job exports."""

import json
import re

from clickstream_pipeline.ingest import openmetrics
from tests.conftest import PROJECT_DIR

SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def exported() -> set[str]:
    names = set()
    for metric in openmetrics.REGISTRY.collect():
        names.add(metric.name)
        names.update(metric.name + s for s in SUFFIXES)
    return names


def test_every_panel_queries_exported_metrics_with_known_labels():
    dashboard = json.loads((PROJECT_DIR / "docs" / "grafana" / "ingest.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(clickstream_[a-z_]+)", target["expr"])
    }
    assert queried, "no panel queries a metric"
    assert queried <= exported(), queried - exported()
    labels = {"query", "outcome", "reason", "phase", "topic", "partition", "le"}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for group in re.findall(r"by \(([^)]*)\)", target["expr"]):
                assert {g.strip() for g in group.split(",")} <= labels, target["expr"]
