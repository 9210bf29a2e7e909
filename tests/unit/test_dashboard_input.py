"""What a request can put into the dashboard: a customer value from a crafted callback request,
and the serving flags."""

from __future__ import annotations

import json

import pytest

from clickstream_pipeline.dashboard.app import OUTPUTS, create_app
from clickstream_pipeline.dashboard.panels import Snapshot, View


def callback_request(customer: object) -> dict:
    """The body Dash's page posts when a selector changes (every output, the three inputs)."""
    outputs = [{"id": element, "property": prop} for element, prop in OUTPUTS]
    return {
        "output": ".." + "...".join(f"{element}.{prop}" for element, prop in OUTPUTS) + "..",
        "outputs": outputs,
        "inputs": [
            {"id": "refresh", "property": "n_intervals", "value": 1},
            {"id": "customer", "property": "value", "value": customer},
            {"id": "range", "property": "value", "value": "6h"},
        ],
        "changedPropIds": ["customer.value"],
        "state": [],
    }


@pytest.mark.parametrize("customer", ["²", "١٢", "12a", "-3", " 7", "9" * 19, 7])
def test_a_customer_that_is_not_a_plain_number_gets_a_message_not_a_server_error(customer):
    asked: list[View] = []

    def load(view: View) -> Snapshot:
        asked.append(view)
        raise AssertionError("no snapshot is read for a bad selection")

    client = create_app(load).server.test_client()
    client.get("/")  # Dash serves callbacks once the page has been rendered
    answer = client.post("/_dash-update-component", json=callback_request(customer))
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    status = json.loads(answer.get_data())["response"]["status"]["children"]
    assert "not a customer number" in status and asked == []


@pytest.mark.parametrize("flag", ["--pool-size", "--workers", "--threads"])
@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_serving_flags_below_one_are_refused_before_anything_starts(flag, value, capsys):
    from clickstream_pipeline.jobs import dashboard

    with pytest.raises(SystemExit) as exited:
        dashboard.parser().parse_args([flag, value])
    assert exited.value.code == 2
    assert f"argument {flag}: must be a whole number of at least 1" in capsys.readouterr().err


def test_a_pool_of_no_connections_cannot_be_made():
    from clickstream_pipeline.dashboard.server import ConnectionPool
    from clickstream_pipeline.warehouse.database import ConnectionParams

    with pytest.raises(ValueError, match="at least 1"):
        ConnectionPool(ConnectionParams("127.0.0.1", 5432, "db", None), size=0)
