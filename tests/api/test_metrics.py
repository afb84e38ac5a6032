"""``GET /metrics``: the series Duly exposes, scraped as Prometheus would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from duly.settings import Settings
from notifications.delivery import Deliverer
from notifications.outbox import OutboxSender
from store.db import Database
from store.models import Obligation, Person
from tests.fakes.temporal import FakeTemporal
from tests.notifications.test_delivery import STEP, ScriptedChannel, learner, render

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    """Every sample of ``/metrics`` keyed by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def client(sqlite_db: Database) -> Iterator[TestClient]:
    settings = Settings(
        env="test",
        rate_limit_per_token="off",
        rate_limit_anonymous="off",
        slack_signing_secret="slack-signing-secret-for-tests",
    )
    app = create_app(settings, database=sqlite_db, temporal_client=FakeTemporal())  # type: ignore[arg-type]
    with TestClient(app) as test_client:
        yield test_client


def obligations(db: Database, rows: list[tuple[str, str, bool]]) -> None:
    """One person and one obligation per (kind, status, completed)."""
    now = datetime(2026, 1, 5, 9, tzinfo=UTC)
    with db.session() as session:
        person = Person(external_id="p-9", name="Grace Hopper", email="grace@example.com")
        session.add(person)
        session.flush()
        for index, (kind, status, completed) in enumerate(rows):
            session.add(
                Obligation(
                    workflow_id=f"{kind}/p-9/req-{index}/1",
                    person_id=person.id,
                    kind=kind,
                    requirement_id=f"req-{index}",
                    requirement_title="Fire safety",
                    due_date=date(2026, 2, 1),
                    status=status,
                    pack_hash="b" * 64,
                    completed_at=now if completed else None,
                    as_of=now,
                )
            )


def test_open_obligations_are_counted_by_kind_and_status(
    client: TestClient, sqlite_db: Database
) -> None:
    obligations(
        sqlite_db,
        [
            ("assignment", "due_soon", False),
            ("assignment", "due_soon", False),
            ("assignment", "overdue", False),
            ("certification", "assigned", False),
            ("assignment", "completed", True),  # closed: not counted
            ("assignment", "cancelled", False),  # closed: not counted
        ],
    )
    samples = scrape(client)
    gauge = "duly_open_obligations"
    assert value(samples, gauge, kind="assignment", status="due_soon") == 2
    assert value(samples, gauge, kind="assignment", status="overdue") == 1
    assert value(samples, gauge, kind="certification", status="assigned") == 1
    assert not [k for k in samples if k[0] == gauge and ("status", "completed") in k[1]]
    assert not [k for k in samples if k[0] == gauge and ("status", "cancelled") in k[1]]
    assert value(samples, "duly_open_obligations_scrape_error") == 0


def test_request_latency_is_labelled_by_route_template_and_status(client: TestClient) -> None:
    name = "duly_http_request_duration_seconds_count"
    template = "/assignments/{assignment_id}"
    before = scrape(client)
    assert client.get("/healthz").status_code == 200
    assert client.get("/assignments/assignment/p-1/fire/1").status_code == 401
    assert client.get("/no/such/route").status_code == 404
    after = scrape(client)

    def delta(**labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(route="/healthz", method="GET", status="200") == 1
    assert delta(route=template, method="GET", status="401") == 1
    assert delta(route="unmatched", method="GET", status="404") == 1
    # Label values are templates: no concrete id ever becomes a series.
    assert not [k for k in after if any("p-1" in v for _, v in k[1])]
    bucket = ("duly_http_request_duration_seconds_bucket", "/healthz")
    assert [k for k in after if k[0] == bucket[0] and ("route", bucket[1]) in k[1]]


def test_webhook_verification_failures_are_counted(client: TestClient) -> None:
    before = value(scrape(client), "duly_webhook_verification_failures_total", provider="slack")
    refused = client.post(
        "/webhooks/slack/interactions",
        content=b"payload=%7B%7D",
        headers={
            "X-Slack-Request-Timestamp": "1",
            "X-Slack-Signature": "v0=bad",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert refused.status_code == 403
    after = value(scrape(client), "duly_webhook_verification_failures_total", provider="slack")
    assert after == before + 1


def test_reminders_and_decisions_series(client: TestClient, sqlite_db: Database) -> None:
    """Sends count by channel and outcome (a replay counts as duplicate)."""
    with sqlite_db.session() as session:
        person = Person(external_id="p-1", name="Ada Lovelace", email="ada@example.com")
        session.add(person)
    name = "duly_reminders_total"
    before = scrape(client)
    deliverer = Deliverer(sqlite_db, {"email": ScriptedChannel("email")}, OutboxSender())
    deliverer.deliver(STEP, learner(person), ["email"], render)
    deliverer.deliver(STEP, learner(person), ["email"], render)
    after = scrape(client)
    for outcome in ("sent", "duplicate"):
        gained = value(after, name, channel="email", outcome=outcome) - value(
            before, name, channel="email", outcome=outcome
        )
        assert gained == 1, outcome
    # The other families are exposed (with help text) before anything is observed.
    text = client.get("/metrics").text
    for family in (
        "duly_decisions_total",
        "duly_sweep_duration_seconds",
        "duly_webhook_verification_failures_total",
    ):
        assert f"# HELP {family}" in text or f"# HELP {family.removesuffix('_total')}" in text
