"""Browser tests of the pages: Debian's Chromium driven by Playwright against a live server.

The app runs under uvicorn in a thread on a free port, on a temporary migrated SQLite database
seeded with the demo org and a read model of obligations; email goes to a local fake SendGrid
(the real SDK and provider code), so the sign-in link is read from what "SendGrid" received.
Temporal is a recording stand-in (:class:`PageTemporal`): signals are recorded, an extension
update re-plans the read model the way the workflow's activity would, and an obligation's
history is a real recorded one (tests/workflows/histories), so the auditor's timeline shows
real decisions.

Chromium is Debian's ``/usr/bin/chromium`` (never a downloaded browser). Without it the tests
skip locally and FAIL under ``CI=true`` (``.ci/run`` installs it).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import select
from temporalio.client import WorkflowHistory

from api.app import create_app
from domain.roles import Role
from duly.demo import load_demo_people
from duly.settings import Settings
from store.db import Database
from store.decisions import record_decision
from store.migrate import upgrade
from store.models import Certificate, Notification, Obligation, Person
from store.tokens import create_token
from tests.conftest import IN_CI
from tests.fakes.providers import FakeSendGrid
from tests.fakes.temporal import FakeHandle, FakeTemporal

CHROMIUM = Path(os.environ.get("DULY_TEST_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]
#: Test artifacts (git-ignored); ``DULY_SCREENSHOTS=docs/screenshots`` refreshes the README's.
SCREENSHOTS = Path(os.environ.get("DULY_SCREENSHOTS", ROOT / ".artifacts" / "screenshots"))
HISTORY = ROOT / "tests" / "workflows" / "histories" / "assignment_gate.json"

MANAGER, LEARNER, PEER = "p-1010", "p-1020", "p-1021"
LEARNER_EMAIL = "ava.fakeworth@demo.duly.example"


def require_chromium() -> None:
    """Skip locally, fail in CI, when Debian's chromium is not installed."""
    if CHROMIUM.exists() or shutil.which(str(CHROMIUM)):
        return
    message = (
        f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium); "
        "the page tests drive it through Playwright and never download a browser"
    )
    if IN_CI:
        pytest.fail(message + "; CI must run the browser tests", pytrace=False)
    pytest.skip(message)


class PageHandle(FakeHandle):
    """A workflow handle: signals recorded, extensions applied to the read model, a history."""

    @property
    def id(self) -> str:
        return self.workflow_id

    async def execute_update(self, update: Any, arg: Any = None, **_: Any) -> Any:
        temporal = self.temporal
        assert isinstance(temporal, PageTemporal)
        name = getattr(update, "__name__", str(update))
        temporal.updates.append((self.workflow_id, name, arg))
        if name == "extend_due_date":
            # What the workflow's read-model activity writes after re-planning.
            with temporal.db.session() as session:
                row = session.scalar(
                    select(Obligation).where(Obligation.workflow_id == self.workflow_id)
                )
                assert row is not None
                row.due_date = arg.new_due_date
                row.status = "assigned"
        return None

    async def fetch_history(self, **_: Any) -> WorkflowHistory:
        return WorkflowHistory.from_json(self.workflow_id, HISTORY.read_text())


@dataclass
class PageTemporal(FakeTemporal):
    """:class:`FakeTemporal` with updates and histories (see :class:`PageHandle`)."""

    db: Any = None
    updates: list[tuple[str, str, Any]] | None = None

    def __post_init__(self) -> None:
        self.updates = []

    def get_workflow_handle(self, workflow_id: str, **_: Any) -> FakeHandle:
        return PageHandle(workflow_id, self)

    def get_workflow_handle_for(self, _run: Any, workflow_id: str, **_: Any) -> FakeHandle:
        return PageHandle(workflow_id, self)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def seed(db: Database) -> dict[str, str]:
    """The demo org, obligations of every kind for a team, a certificate, messages; tokens."""
    today = date.today()
    now = datetime.now(UTC)
    with db.session() as session:
        assert load_demo_people(session).errors == []
    with db.session() as session:
        by_id = {p.external_id: p for p in session.scalars(select(Person))}
        plan: list[tuple[str, str, str, str, str, int | None, int | None]] = [
            # person, kind, requirement, title, status, due in days, expiry in days
            (LEARNER, "training", "hipaa", "HIPAA Privacy", "due_soon", 5, None),
            (LEARNER, "training", "fire-safety", "Fire Safety", "overdue", -3, None),
            (LEARNER, "certification", "bls", "Basic Life Support", "due_soon", None, 20),
            (LEARNER, "mentorship", "mentoring", "Mentoring programme", "assigned", 90, None),
            (PEER, "training", "hipaa", "HIPAA Privacy", "completed", -10, None),
            (PEER, "training", "fire-safety", "Fire Safety", "assigned", 40, None),
            (PEER, "certification", "bls", "Basic Life Support", "overdue", None, -2),
            ("p-1022", "training", "hipaa", "HIPAA Privacy", "overdue", -1, None),
            # A title a spreadsheet would run as a formula: the CSV must neutralise it.
            ("p-1022", "training", "infection", '=HYPERLINK("http://x")', "overdue", -4, None),
            ("p-1023", "training", "hipaa", "HIPAA Privacy", "completed", -20, None),
            ("p-1024", "training", "hipaa", "HIPAA Privacy", "assigned", 25, None),
            (MANAGER, "training", "hipaa", "HIPAA Privacy", "assigned", 60, None),
        ]
        for person, kind, req, title, st, due, expiry in plan:
            workflow_id = (
                f"assignment/{person}/{req}/1" if kind == "training" else f"{kind}/{person}/{req}"
            )
            session.add(
                Obligation(
                    workflow_id=workflow_id,
                    person_id=by_id[person].id,
                    kind=kind,
                    requirement_id=req,
                    requirement_title=title,
                    due_date=today + timedelta(days=due) if due is not None else None,
                    expiry_date=today + timedelta(days=expiry) if expiry is not None else None,
                    status=st,
                    pack_hash="builtin",
                    completed_at=now if st == "completed" else None,
                    as_of=now,
                )
            )
        session.add(
            Certificate(
                verification_code="DULY-BLS-7Q2X-9KPM",
                workflow_id=f"certification/{LEARNER}/bls",
                person_id=by_id[LEARNER].id,
                certification_id="bls",
                title="Basic Life Support",
                cycle=1,
                issued_on=today - timedelta(days=700),
                expires_on=today + timedelta(days=20),
                status="active",
                as_of=now,
            )
        )
        session.add(
            Notification(
                idempotency_key=f"assignment/{LEARNER}/hipaa/1|builtin|-7d|learner|email",
                workflow_id=f"assignment/{LEARNER}/hipaa/1",
                person_id=by_id[LEARNER].id,
                channel="email",
                provider="sendgrid",
                provider_message_id="sg-123",
                kind="training",
                stage="-7d",
                pack_hash="builtin",
                subject="HIPAA Privacy is due in 7 days",
                body="Reminder",
                status="delivered",
                recipient_role="learner",
                fired_at=now - timedelta(days=2),
                delivered_at=now - timedelta(days=2),
            )
        )
    with db.session() as session:
        # Recorded decisions: HIPAA for the learner was "assigned" 40 days ago, "due_soon" 3.
        learner = session.scalar(select(Person).where(Person.external_id == LEARNER))
        assert learner is not None
        for status, days, rule in (("assigned", 40, "open"), ("due_soon", 3, "due-within-7")):
            record_decision(
                session,
                workflow_id=f"assignment/{LEARNER}/hipaa/1",
                person_id=learner.id,
                kind="training",
                requirement_id="hipaa",
                status=status,
                rule=rule,
                pack_hash="builtin",
                facts={"due_date": (today + timedelta(days=5)).isoformat(), "completed": False},
                decided_at=now - timedelta(days=days),
                source="rules",
                trigger="timer",
            )
    tokens = {}
    with db.session() as session:
        tokens["hr"] = create_token(session, role=Role.HR_ADMIN, label="page tests hr")
        tokens["auditor"] = create_token(session, role=Role.AUDITOR, label="page tests auditor")
        tokens["manager"] = create_token(
            session, role=Role.MANAGER, person_external_id=MANAGER, label="page tests manager"
        )
        tokens["learner"] = create_token(
            session, role=Role.LEARNER, person_external_id=LEARNER, label="page tests learner"
        )
    return tokens


@dataclass
class LiveSite:
    """A running Duly for the browser."""

    url: str
    db: Database
    temporal: PageTemporal
    sendgrid: FakeSendGrid
    tokens: dict[str, str]

    def bearer(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    require_chromium()
    url = f"sqlite:///{tmp_path_factory.mktemp('pages') / 'duly.db'}"
    upgrade(url)
    db = Database(url)
    tokens = seed(db)
    temporal = PageTemporal(db=db)
    port = free_port()
    with FakeSendGrid() as sendgrid:
        settings = Settings(
            env="test",
            temporal_address="127.0.0.1:1",
            public_url=f"http://127.0.0.1:{port}",
            sendgrid_api_key=sendgrid.api_key,
            sendgrid_base_url=sendgrid.base_url,
            rate_limit_per_token="off",
            rate_limit_anonymous="off",
        )
        app = create_app(settings, database=db, temporal_client=temporal)  # type: ignore[arg-type]
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        try:
            yield LiveSite(f"http://127.0.0.1:{port}", db, temporal, sendgrid, tokens)
        finally:
            server.should_exit = True
            thread.join(10)
            db.dispose()


@pytest.fixture(scope="module")
def browser(site: LiveSite) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-background-networking"],
            headless=True,
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Any, site: LiveSite) -> Iterator[Any]:
    ctx = browser.new_context(
        base_url=site.url, accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
    # Offline: nothing but the site itself may be fetched (no CDN, no fonts, no analytics).
    outside: list[str] = []

    def guard(route: Any) -> None:
        if route.request.url.startswith(site.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    ctx.route("**/*", guard)
    try:
        yield ctx
    finally:
        ctx.close()
        assert not outside, f"the pages fetched from outside the site: {outside}"


@contextmanager
def page_client(
    db: Database, temporal: FakeTemporal, base_url: str = "http://testserver"
) -> Iterator[TestClient]:
    """The app on ``db`` and a stand-in Temporal, for page routes tested without a browser."""
    settings = Settings(
        env="test",
        temporal_address="127.0.0.1:1",
        rate_limit_per_token="off",
        rate_limit_anonymous="off",
    )
    app = create_app(settings, database=db, temporal_client=temporal)  # type: ignore[arg-type]
    with TestClient(app, base_url=base_url) as client:
        yield client


def field_error(page: str, field_id: str, *, invalid: bool = True) -> str:
    """The error shown next to the field ``field_id`` (unescaped), or fail.

    The field points to it (``aria-describedby``), so a screen reader reads it with the field;
    an input also says it is invalid (``invalid``; a fieldset of checkboxes cannot).
    """
    found = re.search(rf'<p class="field-error" id="{field_id}-error">([^<]*)</p>', page)
    assert found, f"no error next to #{field_id}"
    flag = r'[^>]*aria-invalid="true"' if invalid else ""
    assert re.search(rf'id="{field_id}"{flag}[^>]*aria-describedby="[^"]*{field_id}-error', page)
    return html.unescape(found.group(1))


def input_value(page: str, field_id: str) -> str:
    """The value the input ``field_id`` holds in the page (unescaped), or fail."""
    found = re.search(rf'id="{field_id}"[^>]*value="([^"]*)"', page)
    assert found, f"no #{field_id} input"
    return html.unescape(found.group(1))


def sign_in_with_token(page: Any, token: str) -> None:
    page.goto("/ui/sign-in")
    page.get_by_label("API token", exact=True).fill(token)
    page.get_by_role("button", name="Sign in with token").click()
    page.wait_for_url(lambda url: "/ui/sign-in" not in url)


def shot(page: Any, name: str) -> None:
    """Save a full-page screenshot as ``<SCREENSHOTS>/<name>.png`` (a test artifact)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def last_email_text(sendgrid: FakeSendGrid) -> str:
    assert sendgrid.accepted, "SendGrid received nothing"
    payload = sendgrid.accepted[-1].json
    return json.dumps(payload)
