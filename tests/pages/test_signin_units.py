"""Sign-in links, session cookies, CSRF, reminders-once-a-day and charts, without a browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.charts import bar_chart, line_chart
from api.web import csrf_for, decode_session, encode_session
from domain.roles import Role
from duly.demo import load_demo_people
from duly.settings import Settings
from notifications.channels import ChannelMessage, SendResult
from services import reminders, signin
from services.errors import Conflict
from store.db import Database
from store.models import ApiToken, Notification, Obligation, Person
from store.tokens import Principal
from tests.fakes.temporal import FakeTemporal

KEY = b"k" * 32
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Captured:
    """An email channel that keeps what it was asked to send."""

    name: str = "email"
    provider: str = "capture"
    sent: list[ChannelMessage] = field(default_factory=list)

    def send(self, message: ChannelMessage) -> SendResult:
        self.sent.append(message)
        return SendResult(provider=self.provider, provider_message_id=f"c-{len(self.sent)}")


def test_a_link_verifies_and_every_tampering_is_refused() -> None:
    token = signin.make_link_token(KEY, 7, NOW + timedelta(minutes=15))
    claim = signin.verify_link_token(KEY, token, now=NOW)
    assert claim.person_id == 7 and len(claim.nonce) == 32
    head, mac = token.rsplit(".", 1)
    other_person = token.replace("s1.7.", "s1.8.", 1)
    for forged in (
        other_person,
        head + "." + ("A" if mac[0] != "A" else "B") + mac[1:],
        token + "x",
        "v2.1.2.abc",
        "",
    ):
        with pytest.raises(signin.LinkInvalid):
            signin.verify_link_token(KEY, forged, now=NOW)
    with pytest.raises(signin.LinkInvalid):
        signin.verify_link_token(b"o" * 32, token, now=NOW)
    with pytest.raises(signin.LinkExpired):
        signin.verify_link_token(KEY, token, now=NOW + timedelta(minutes=15))


def test_session_cookie_round_trip_expiry_and_tampering() -> None:
    value = encode_session(KEY, "duly_abc", NOW + timedelta(hours=1), from_link=True)
    assert decode_session(KEY, value, now=NOW) == ("duly_abc", True)
    assert decode_session(KEY, value, now=NOW + timedelta(hours=1)) is None
    assert decode_session(b"o" * 32, value, now=NOW) is None
    assert decode_session(KEY, value.replace(".l.", ".t.", 1), now=NOW) is None
    later = value.replace(str(int((NOW + timedelta(hours=1)).timestamp())), "9999999999", 1)
    assert decode_session(KEY, later, now=NOW) is None
    assert csrf_for(KEY, "duly_abc") != csrf_for(KEY, "duly_abd")


@pytest.fixture
def people(sqlite_db: Database) -> Database:
    with sqlite_db.session() as session:
        assert load_demo_people(session).errors == []
    return sqlite_db


def test_request_and_redeem_a_link_once(people: Database) -> None:
    settings = Settings(env="test", public_url="https://duly.example")
    channel = Captured()
    with people.session() as session:
        assert signin.request_link(
            session,
            settings=settings,
            email="AVA.Fakeworth@demo.duly.example ",
            now=NOW,
            channel=channel,
        )
        assert not signin.request_link(
            session, settings=settings, email="nobody@example.com", now=NOW, channel=channel
        )
    assert len(channel.sent) == 1
    found = re.search(r"https://duly\.example/ui/sign-in/link/(\S+)", channel.sent[0].text)
    assert found
    token = found.group(1)
    with people.session() as session:
        row = session.scalar(select(Notification).where(Notification.kind == "sign_in"))
        assert row is not None and token not in row.body and row.status == "sent"
        assert row.provider == "capture" and signin.REDACTED_LINK in row.body
    with people.session() as session:
        value = signin.redeem_link(session, settings=settings, token=token, now=NOW)
    with people.session() as session:
        api_token = session.scalar(select(ApiToken).order_by(ApiToken.id.desc()))
        assert api_token is not None and api_token.role == Role.LEARNER.value
        assert api_token.expires_at == NOW + timedelta(minutes=settings.web_session_minutes)
        assert value.startswith("duly_")
    with people.session() as session, pytest.raises(signin.LinkUsed):
        signin.redeem_link(session, settings=settings, token=token, now=NOW)


def test_a_manager_signed_in_by_link_is_a_manager(people: Database) -> None:
    settings = Settings(env="test")
    with people.session() as session:
        manager = session.scalar(select(Person).where(Person.external_id == "p-1010"))
        assert manager is not None
        token = signin.make_link_token(
            settings.key_ring().sign_in_link, manager.id, NOW + timedelta(minutes=5)
        )
        signin.redeem_link(session, settings=settings, token=token, now=NOW)
        row = session.scalar(select(ApiToken).order_by(ApiToken.id.desc()))
        assert row is not None and row.role == Role.MANAGER.value


def test_remind_now_once_per_obligation_per_day(people: Database) -> None:
    settings = Settings(env="test")
    channel = Captured()
    principal = Principal(1, Role.MANAGER, None, "p-1010", None)
    with people.session() as session:
        person = session.scalar(select(Person).where(Person.external_id == "p-1020"))
        assert person is not None
        session.add(
            Obligation(
                workflow_id="assignment/p-1020/hipaa/1",
                person_id=person.id,
                kind="training",
                requirement_id="hipaa",
                requirement_title="HIPAA",
                status="overdue",
                pack_hash="builtin",
                as_of=NOW,
            )
        )
    for moment, sent in ((NOW, 1), (NOW + timedelta(hours=11), 1), (NOW + timedelta(days=1), 2)):
        with people.session() as session:
            try:
                reminders.remind_now(
                    session,
                    settings=settings,
                    workflow_id="assignment/p-1020/hipaa/1",
                    principal=principal,
                    now=moment,
                    channel=channel,
                )
            except reminders.AlreadyRemindedToday:
                assert moment.date() == NOW.date()
        assert len(channel.sent) == sent
    with people.session() as session, pytest.raises(Conflict):
        row = session.scalar(select(Obligation))
        assert row is not None
        row.status = "completed"
        session.flush()
        reminders.remind_now(
            session,
            settings=settings,
            workflow_id="assignment/p-1020/hipaa/1",
            principal=principal,
            now=NOW + timedelta(days=5),
            channel=channel,
        )


@pytest.fixture
def client(people: Database) -> Iterator[TestClient]:
    settings = Settings(
        env="test",
        temporal_address="127.0.0.1:1",
        rate_limit_per_token="off",
        rate_limit_anonymous="off",
    )
    app = create_app(settings, database=people, temporal_client=FakeTemporal())  # type: ignore[arg-type]
    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client


def test_sign_in_form_needs_its_csrf_cookie_and_sets_a_strict_cookie(
    client: TestClient, people: Database
) -> None:
    from store.tokens import create_token

    with people.session() as session:
        token = create_token(session, role=Role.AUDITOR, label="t")
    page = client.get("/ui/sign-in")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    refused = client.post(
        "/ui/sign-in/token",
        data={"token": token, "csrf": "wrong" * 5},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    answer = client.post(
        "/ui/sign-in/token", data={"token": token, "csrf": csrf.group(1)}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/audit"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    assert client.get("/ui/audit").status_code == 200
    # A form post without the session's CSRF token is refused; with it, accepted.
    assert client.post("/ui/sign-out", data={}, follow_redirects=False).status_code == 403
    audit_page = client.get("/ui/audit").text
    session_csrf = re.search(r'name="csrf" value="([^"]+)"', audit_page)
    assert session_csrf
    out = client.post("/ui/sign-out", data={"csrf": session_csrf.group(1)}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/ui/audit").status_code == 401


def test_pages_send_a_strict_content_security_policy(client: TestClient) -> None:
    page = client.get("/ui/sign-in")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert '<script src="/ui/static/htmx.min.js"' in page.text
    assert client.get("/ui/static/htmx.min.js").status_code == 200


def test_charts_escape_labels_and_describe_their_numbers() -> None:
    line = str(line_chart("Trend <x>", [("2026-01", 0.5), ("2026-02", None), ("<b>", 1.0)]))
    assert "<b>" not in line and "&lt;b&gt;" in line and "Trend &lt;x&gt;" in line
    assert 'role="img"' in line and "2026-01: 50%; 2026-02: no data" in line
    bars = str(bar_chart("By team", [("Team <A>", 0.25, 4), ("B", None, 0)], ident="t"))
    assert "Team &lt;A&gt;: 25% of 4" in bars and 'id="t-t"' in bars
    assert bars.count("<rect") == 3  # two tracks, one bar (no bar without data)


def test_hr_sees_the_diff_between_two_pack_versions(client: TestClient, people: Database) -> None:
    from store.models import RulesPackVersion
    from store.tokens import create_token

    with people.session() as session:
        for n, days in ((1, 30), (2, 60)):
            session.add(
                RulesPackVersion(
                    content_hash=f"{n}" * 64,
                    name="clinic",
                    author="hr",
                    message=f"v{n}",
                    content={"requirements": [{"id": "hipaa", "due_in_days": days}]},
                    active=n == 2,
                    deployed_at=NOW + timedelta(days=n),
                )
            )
        token = create_token(session, role=Role.HR_ADMIN, label="hr")
    hr = {"Authorization": f"Bearer {token}"}
    page = client.get("/ui/org", params={"a": "1" * 64, "b": "2" * 64}, headers=hr)
    assert page.status_code == 200, page.text[:300]
    assert "-      &#34;due_in_days&#34;: 30" in page.text
    assert "+      &#34;due_in_days&#34;: 60" in page.text
    missing = client.get("/ui/org", params={"a": "1" * 64, "b": "f" * 64}, headers=hr)
    assert missing.status_code == 404
