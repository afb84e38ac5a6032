"""HR's forms on the apprenticeship pages, without a browser: enrol, suspend, reinstate,
withdraw, transfer the supervisor.

Each goes through the API's body model and ``services.apprenticeships`` (a recording Temporal
stands in for the workflow): only HR may post (401 / 403 otherwise), a cookie session needs its
CSRF token, a refusal answers the page again with the message next to its field and what was
typed kept (nothing started, nothing signalled), a success redirects with a confirmation.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from domain.contracts.apprenticeship import (
    ApprenticeshipInput,
    ChangeEnrolment,
    EnrolmentAction,
    TransferSupervisor,
)
from domain.roles import Role
from duly.demo import load_demo_people
from rules.loader import load_pack
from store.apprenticeships import Apprenticeship
from store.db import Database
from store.models import AuditEntry, Person
from store.packs import Migration, deploy
from tests.conftest import bearer
from tests.fakes.temporal import FakeHandle, FakeTemporal
from tests.pages.conftest import field_error, input_value, page_client

PACK = Path(__file__).parents[2] / "rules" / "packs" / "field-technicians"
PROGRAM = "elevator-mechanic"
#: The demo org: p-1010 manages p-1020 and p-1021.
SUPERVISOR, APPRENTICE, OTHER = "p-1010", "p-1020", "p-1021"
ENROLLED = f"apprenticeship/{OTHER}/{PROGRAM}"


@dataclass
class Recorder(FakeTemporal):
    """Starts and updates recorded; an update can be refused as the workflow's validator does."""

    refuse: str | None = None

    def get_workflow_handle(self, workflow_id: str, **_: Any) -> FakeHandle:
        return RecordingHandle(workflow_id, self)

    async def start_workflow(self, _run: Any, arg: Any, **kwargs: Any) -> None:
        if any(started.workflow_id == arg.workflow_id for started, _ in self.started):
            raise WorkflowAlreadyStartedError(arg.workflow_id, "ApprenticeshipWorkflow")
        await super().start_workflow(_run, arg, **kwargs)


class RecordingHandle(FakeHandle):
    async def execute_update(self, update: Any, arg: Any = None, **_: Any) -> None:
        temporal = self.temporal
        assert isinstance(temporal, Recorder)
        if temporal.refuse is not None:
            raise WorkflowUpdateFailedError(ApplicationError(temporal.refuse))
        temporal.signals.append((self.workflow_id, getattr(update, "__name__", ""), arg))


@pytest.fixture
def org(sqlite_db: Database) -> dict[str, dict[str, str]]:
    """The demo people, the field-technicians pack, one enrolled apprentice; a token per role."""
    now = datetime.now(UTC)
    with sqlite_db.session() as session:
        assert load_demo_people(session).errors == []
    with sqlite_db.session() as session:
        pack = load_pack(PACK)
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        other = session.scalar(select(Person).where(Person.external_id == OTHER))
        assert other is not None
        session.add(
            Apprenticeship(
                workflow_id=ENROLLED,
                person_id=other.id,
                program_id=PROGRAM,
                program_name="Elevator Mechanic Apprenticeship",
                pack_hash=pack.content_hash,
                supervisor=SUPERVISOR,
                status="active",
                compliance_status="on_track",
                decided_by="apprenticeship-progress:on-track",
                period=1,
                wage_percentage=50,
                enrolled_on=now.date() - timedelta(days=30),
                expected_completion=now.date() + timedelta(days=4 * 365),
                summary={},
                as_of=now,
            )
        )
    return {
        "anonymous": {},
        "hr": bearer(sqlite_db, Role.HR_ADMIN),
        "auditor": bearer(sqlite_db, Role.AUDITOR),
        "manager": bearer(sqlite_db, Role.MANAGER, SUPERVISOR),
        "learner": bearer(sqlite_db, Role.LEARNER, OTHER),
    }


@pytest.fixture
def temporal() -> Recorder:
    return Recorder()


@pytest.fixture
def client(sqlite_db: Database, temporal: Recorder) -> Iterator[TestClient]:
    # https: the session cookie is Secure.
    with page_client(sqlite_db, temporal, "https://testserver") as test_client:
        yield test_client


def _enrol(client: TestClient, headers: dict[str, str], **fields: str) -> Any:
    data = {"person": APPRENTICE, "program_id": PROGRAM, "supervisor": SUPERVISOR, **fields}
    return client.post(
        "/ui/apprenticeships/enroll", data=data, headers=headers, follow_redirects=False
    )


def test_only_hr_sees_and_posts_the_forms(
    client: TestClient, org: dict[str, dict[str, str]], temporal: Recorder
) -> None:
    hr_list = client.get("/ui/apprenticeships", headers=org["hr"]).text
    assert 'action="/ui/apprenticeships/enroll"' in hr_list
    assert f'<option value="{PROGRAM}"' in hr_list
    hr_page = client.get(f"/ui/apprenticeships/{ENROLLED}", headers=org["hr"]).text
    assert "HR actions" in hr_page and f"{ENROLLED}/suspend" in hr_page
    assert f"{ENROLLED}/reinstate" not in hr_page  # active: nothing to reinstate
    for role in ("manager", "auditor", "learner"):
        seen = client.get("/ui/apprenticeships", headers=org[role]).text
        assert "Enrol an apprentice" not in seen
    # The supervisor sees the apprenticeship, not HR's actions.
    supervised = client.get(f"/ui/apprenticeships/{ENROLLED}", headers=org["manager"]).text
    assert "HR actions" not in supervised and "/suspend" not in supervised

    posts = [
        ("/ui/apprenticeships/enroll", {"person": APPRENTICE, "supervisor": SUPERVISOR}),
        *(
            (f"/ui/apprenticeships/{ENROLLED}/{action}", {"reason": "r"})
            for action in ("suspend", "reinstate", "withdraw")
        ),
        (f"/ui/apprenticeships/{ENROLLED}/transfer-supervisor", {"supervisor": APPRENTICE}),
    ]
    for path, data in posts:
        for role, expected in (("anonymous", 401), ("manager", 403), ("auditor", 403)):
            answer = client.post(path, data=data, headers=org[role], follow_redirects=False)
            assert answer.status_code == expected, (path, role, answer.text[:200])
        learner = client.post(path, data=data, headers=org["learner"], follow_redirects=False)
        assert learner.status_code == 403, (path, learner.text[:200])
    assert temporal.started == [] and temporal.signals == []


def test_a_cookie_session_needs_the_forms_csrf_token(
    client: TestClient, org: dict[str, dict[str, str]], temporal: Recorder
) -> None:
    sign_in = client.get("/ui/sign-in").text
    anon = re.search(r'name="csrf" value="([^"]+)"', sign_in)
    assert anon
    token = org["hr"]["Authorization"].removeprefix("Bearer ")
    signed = client.post(
        "/ui/sign-in/token", data={"token": token, "csrf": anon.group(1)}, follow_redirects=False
    )
    assert signed.status_code == 303
    page = client.get("/ui/apprenticeships").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    for forged in ({}, {"csrf": "x" * 22}):
        refused = _enrol(client, {}, **forged)
        assert refused.status_code == 403 and "reload the page" in refused.text
        suspend = client.post(
            f"/ui/apprenticeships/{ENROLLED}/suspend", data=forged, follow_redirects=False
        )
        assert suspend.status_code == 403
    assert temporal.started == [] and temporal.signals == []
    answer = _enrol(client, {}, csrf=csrf.group(1))
    assert answer.status_code == 303, answer.text[:300]
    assert len(temporal.started) == 1


def test_enrol_redirects_to_the_new_apprenticeship_with_a_confirmation(
    client: TestClient, org: dict[str, dict[str, str]], temporal: Recorder, sqlite_db: Database
) -> None:
    day = (date.today() - timedelta(days=3)).isoformat()
    answer = _enrol(client, org["hr"], enrolled_on=day)
    wid = f"apprenticeship/{APPRENTICE}/{PROGRAM}"
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ui/apprenticeships/{wid}?done=enrolled"
    (started, options), *_ = temporal.started
    assert isinstance(started, ApprenticeshipInput)
    assert (started.person, started.supervisor, started.enrolled_on.isoformat()) == (
        APPRENTICE,
        SUPERVISOR,
        day,
    )
    assert options["id"] == wid
    page = client.get(answer.headers["location"], headers=org["hr"])
    assert page.status_code == 200
    assert "The apprentice is enrolled" in page.text and 'role="status"' in page.text
    with sqlite_db.session() as session:
        actions = list(session.scalars(select(AuditEntry.action)))
    assert "apprenticeship.enroll" in actions
    # The same enrolment again: refused next to the apprentice, nothing lost.
    again = _enrol(client, org["hr"], enrolled_on=day)
    assert again.status_code == 409
    assert "already enrolled" in field_error(again.text, "enrol-person")
    assert input_value(again.text, "enrol-on") == day


@pytest.mark.parametrize(
    ("fields", "field_id", "says", "status"),
    [
        ({"person": ""}, "enrol-person", "This is required: type the apprentice's", 422),
        ({"supervisor": "p-nobody"}, "enrol-supervisor", "'p-nobody' is not in the directory", 422),
        ({"supervisor": APPRENTICE}, "enrol-supervisor", "cannot supervise themselves", 422),
        ({"enrolled_on": "2026-13-40"}, "enrol-on", "valid date", 422),
        ({"enrolled_on": "2999-01-01"}, "enrol-on", "is in the future", 422),
        ({"program_id": "plumber"}, "enrol-program", "programs: elevator-mechanic", 422),
        ({"person": "x" * 65}, "enrol-person", "at most 64 characters", 422),
    ],
)
def test_a_refused_enrolment_says_why_next_to_the_field_and_keeps_the_input(
    client: TestClient,
    org: dict[str, dict[str, str]],
    temporal: Recorder,
    fields: dict[str, str],
    field_id: str,
    says: str,
    status: int,
) -> None:
    answer = _enrol(client, org["hr"], **fields)
    assert answer.status_code == status, answer.text[:300]
    assert says in field_error(answer.text, field_id)
    assert "Nobody was enrolled" in answer.text and 'role="alert"' in answer.text
    typed = {"person": APPRENTICE, "supervisor": SUPERVISOR, "enrolled_on": "", **fields}
    assert input_value(answer.text, "enrol-person") == typed["person"]
    assert input_value(answer.text, "enrol-supervisor") == typed["supervisor"]
    assert input_value(answer.text, "enrol-on") == typed["enrolled_on"]
    assert temporal.started == []


@pytest.mark.parametrize(
    ("action", "done"),
    [
        (EnrolmentAction.SUSPEND, "suspended"),
        (EnrolmentAction.REINSTATE, "reinstated"),
        (EnrolmentAction.WITHDRAW, "withdrawn"),
    ],
)
def test_suspend_reinstate_withdraw_call_the_service_and_confirm(
    client: TestClient,
    org: dict[str, dict[str, str]],
    temporal: Recorder,
    sqlite_db: Database,
    action: EnrolmentAction,
    done: str,
) -> None:
    path = f"/ui/apprenticeships/{ENROLLED}/{action.value}"
    answer = client.post(
        path, data={"reason": " on leave "}, headers=org["hr"], follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ui/apprenticeships/{ENROLLED}?done={done}"
    [(workflow_id, name, request)] = temporal.signals
    assert (workflow_id, name) == (ENROLLED, "change_enrolment")
    assert isinstance(request, ChangeEnrolment)
    assert (request.action, request.reason) == (action, "on leave")
    with sqlite_db.session() as session:
        actions = list(session.scalars(select(AuditEntry.action)))
    assert f"apprenticeship.{action.value}" in actions
    page = client.get(answer.headers["location"], headers=org["hr"]).text
    assert f"apprenticeship is {done}" in page


def test_a_refused_change_keeps_the_reason(
    client: TestClient, org: dict[str, dict[str, str]], temporal: Recorder
) -> None:
    path = f"/ui/apprenticeships/{ENROLLED}/suspend"
    long = "why " * 501  # 2,004 characters: the API's limit is 2,000
    answer = client.post(path, data={"reason": long}, headers=org["hr"], follow_redirects=False)
    assert answer.status_code == 422
    assert "at most 2000 characters" in field_error(answer.text, "suspend-reason")
    assert long.strip() in html.unescape(answer.text)
    assert "Nothing was changed" in answer.text
    assert temporal.signals == []
    # The workflow's own refusal (its validator) is shown above the form, the reason kept.
    temporal.refuse = "the apprenticeship is already suspended"
    answer = client.post(
        path, data={"reason": "second try"}, headers=org["hr"], follow_redirects=False
    )
    assert answer.status_code == 422
    summary = re.search(r'id="suspend-errors">(.*?)</div>', answer.text, re.S)
    assert summary and "the apprenticeship is already suspended" in summary.group(1)
    assert ">second try</textarea>" in answer.text
    # An apprenticeship nobody enrolled: 404, as the API answers.
    missing = client.post(
        "/ui/apprenticeships/apprenticeship/p-1099/x/suspend",
        data={"reason": "r"},
        headers=org["hr"],
        follow_redirects=False,
    )
    assert missing.status_code == 404


def test_transfer_the_supervisor(
    client: TestClient, org: dict[str, dict[str, str]], temporal: Recorder
) -> None:
    path = f"/ui/apprenticeships/{ENROLLED}/transfer-supervisor"
    unknown = client.post(
        path,
        data={"supervisor": "p-nobody", "reason": "retired"},
        headers=org["hr"],
        follow_redirects=False,
    )
    assert unknown.status_code == 422
    assert "not in the directory" in field_error(unknown.text, "transfer-supervisor")
    assert input_value(unknown.text, "transfer-supervisor") == "p-nobody"
    assert ">retired</textarea>" in unknown.text
    empty = client.post(path, data={}, headers=org["hr"], follow_redirects=False)
    assert empty.status_code == 422
    assert "This is required" in field_error(empty.text, "transfer-supervisor")
    assert temporal.signals == []
    # The workflow refuses the same supervisor: said next to the field.
    temporal.refuse = f"'{SUPERVISOR}' already supervises this apprenticeship"
    same = client.post(
        path, data={"supervisor": SUPERVISOR}, headers=org["hr"], follow_redirects=False
    )
    assert same.status_code == 422
    assert "already supervises" in field_error(same.text, "transfer-supervisor")
    temporal.refuse = None
    moved = client.post(
        path,
        data={"supervisor": "p-1001", "reason": "retired"},
        headers=org["hr"],
        follow_redirects=False,
    )
    assert moved.status_code == 303
    assert moved.headers["location"] == f"/ui/apprenticeships/{ENROLLED}?done=transferred"
    [(_, name, request)] = temporal.signals
    assert name == "transfer_supervisor" and isinstance(request, TransferSupervisor)
    assert (request.supervisor, request.reason) == ("p-1001", "retired")
