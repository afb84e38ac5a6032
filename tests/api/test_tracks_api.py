"""Tracks and projects through the API: enrol, progress (as of), my tracks, readiness."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from domain.contracts.assignment import AssignmentInput
from domain.contracts.tracks import ProjectReadinessInput
from domain.roles import Role
from duly.demo import load_demo_people
from duly.settings import Settings
from rules.loader import load_pack
from store.db import Database
from store.models import AuditEntry, Obligation, Person
from store.packs import Migration, deploy
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
PATH = "radiology-research-path"


@pytest.fixture
def temporal() -> FakeTemporal:
    return FakeTemporal()


@pytest.fixture
def client(sqlite_db: Database, temporal: FakeTemporal) -> Iterator[TestClient]:
    with sqlite_db.session() as session:
        assert load_demo_people(session).errors == []
        deploy(
            session, load_pack(MEDICAL), author="hr", message="v1", migration=Migration.GRANDFATHER
        )
    settings = Settings(env="test", temporal_address="127.0.0.1:1")
    app = create_app(settings, database=sqlite_db, temporal_client=temporal)  # type: ignore[arg-type]
    with TestClient(app) as test_client:
        yield test_client


def _as(db: Database, role: Role, person: str | None = None) -> dict[str, str]:
    return bearer(db, role, person)


def _complete(db: Database, person: str, requirement: str, at: datetime) -> None:
    """What the assignment workflow's read model records when a course completes."""
    with db.session() as session:
        row = session.scalar(select(Person).where(Person.external_id == person))
        assert row is not None
        session.add(
            Obligation(
                workflow_id=f"assignment/{person}/{requirement}/1",
                person_id=row.id,
                kind="training",
                requirement_id=requirement,
                requirement_title=requirement,
                due_date=at.date() + timedelta(days=10),
                status="compliant",
                pack_hash="x",
                as_of=at,
                started_at=at,
                completed_at=at,
            )
        )


def _started(temporal: FakeTemporal) -> list[Any]:
    return [arg for arg, _ in temporal.started]


def test_tracks_are_listed_with_their_courses(client: TestClient, sqlite_db: Database) -> None:
    learner = _as(sqlite_db, Role.LEARNER, "p-1030")
    listed = client.get("/tracks", headers=learner)
    assert listed.status_code == 200
    assert {t["id"] for t in listed.json()} >= {"site-investigator", PATH}
    one = client.get("/tracks/site-investigator", headers=learner).json()
    assert [c["requirement_id"] for c in one["courses"]][:2] == [
        "human-subjects-protection",
        "ich-gcp",
    ]
    assert client.get("/tracks/nope", headers=learner).status_code == 404


def test_enrolment_assigns_the_courses_at_their_milestones(
    client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    hr = _as(sqlite_db, Role.HR_ADMIN)
    answer = client.post(f"/tracks/{PATH}/enroll", json={"person": "p-1030"}, headers=hr)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["created"] is True
    inputs = [a for a in _started(temporal) if isinstance(a, AssignmentInput)]
    # Assigned through the track: a course's own pass mark applies to its gate.
    assert {i.track_id for i in inputs} == {PATH}
    due = {
        i.requirement_id: (i.due_date - date.fromisoformat(body["enrolled_on"])).days
        for i in inputs
    }
    assert due == {
        "hipaa-privacy-security": 14,
        "osha-bloodborne-pathogens": 30,
        "human-subjects-protection": 45,
        "ich-gcp": 60,
    }
    # The workflows record their obligations: enrolling again starts nothing more.
    with sqlite_db.session() as session:
        person = session.scalar(select(Person).where(Person.external_id == "p-1030"))
        assert person is not None
        for inp in inputs:
            session.add(
                Obligation(
                    workflow_id=inp.workflow_id,
                    person_id=person.id,
                    kind="training",
                    requirement_id=inp.requirement_id,
                    requirement_title=inp.requirement_title,
                    due_date=inp.due_date,
                    status="assigned",
                    pack_hash=inp.pack_hash,
                    as_of=datetime.now(UTC),
                )
            )
    again = client.post(f"/tracks/{PATH}/enroll", json={"person": "p-1030"}, headers=hr)
    assert again.json()["created"] is False and again.json()["started"] == []
    assert len(_started(temporal)) == 4
    with sqlite_db.session() as session:
        actions = session.scalars(select(AuditEntry.action)).all()
    assert "track.enrol" in actions


def test_a_manager_enrols_reports_only(client: TestClient, sqlite_db: Database) -> None:
    manager = _as(sqlite_db, Role.MANAGER, "p-1012")
    ok = client.post(f"/tracks/{PATH}/enroll", json={"person": "p-1031"}, headers=manager)
    assert ok.status_code == 201
    other = _as(sqlite_db, Role.MANAGER, "p-1010")
    hidden = client.post(f"/tracks/{PATH}/enroll", json={"person": "p-1031"}, headers=other)
    assert hidden.status_code == 404
    learner = _as(sqlite_db, Role.LEARNER, "p-1031")
    assert (
        client.post(
            f"/tracks/{PATH}/enroll", json={"person": "p-1031"}, headers=learner
        ).status_code
        == 403
    )


def test_progress_per_course_and_as_of(client: TestClient, sqlite_db: Database) -> None:
    hr = _as(sqlite_db, Role.HR_ADMIN)
    client.post(f"/tracks/{PATH}/enroll", json={"person": "p-1030"}, headers=hr)
    now = datetime.now(UTC)
    _complete(sqlite_db, "p-1030", "hipaa-privacy-security", now)
    rows = client.get(f"/tracks/{PATH}/progress", headers=hr).json()
    assert len(rows) == 1 and rows[0]["person"] == "p-1030"
    assert rows[0]["status"] == "in_progress" and rows[0]["percent"] == 25
    courses = {c["requirement_id"]: c["status"] for c in rows[0]["courses"]}
    assert courses["hipaa-privacy-security"] == "completed"
    assert courses["ich-gcp"] == "not_started"
    # Yesterday, nobody was enrolled yet.
    yesterday = (now - timedelta(days=1)).date().isoformat()
    past = client.get(f"/tracks/{PATH}/progress", params={"as_of": yesterday}, headers=hr)
    assert past.json() == []
    mine = client.get("/me/tracks", headers=_as(sqlite_db, Role.LEARNER, "p-1030")).json()
    assert [t["track_id"] for t in mine] == [PATH]
    assert client.get("/me/tracks", headers=_as(sqlite_db, Role.LEARNER, "p-1031")).json() == []


def test_project_readiness_blocks_until_the_team_completes(
    client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    hr = _as(sqlite_db, Role.HR_ADMIN)
    go_live = (date.today() + timedelta(days=14)).isoformat()
    made = client.post(
        "/projects",
        json={
            "name": "Imaging",
            "client": "Riverside",
            "go_live": go_live,
            "project_manager": "p-1010",
        },
        headers=hr,
    )
    assert made.status_code == 201, made.text
    project = made.json()["id"]
    started = [a for a in _started(temporal) if isinstance(a, ProjectReadinessInput)]
    assert started and started[0].project_id == project
    given = client.post(
        f"/projects/{project}/tracks",
        json={
            "track_id": "site-administrator",
            "target_role": "manager",
            "people_needed": 1,
            "due_date": go_live,
        },
        headers=hr,
    )
    assert given.status_code == 200 and given.json()["tracks"][0]["people_needed"] == 1
    first = client.get(f"/projects/{project}/readiness", headers=hr).json()
    assert first["ready"] is False
    assert first["blocking"][0]["track"] == "site-administrator"
    assert "nobody is enrolled" in first["blocking"][0]["people_not_done"][0]

    client.post("/tracks/site-administrator/enroll", json={"person": "p-1012"}, headers=hr)
    blocked = client.get(f"/projects/{project}/readiness", headers=hr).json()
    assert blocked["ready"] is False
    assert "Hana Stubbington" in blocked["blocking"][0]["people_not_done"][0]

    now = datetime.now(UTC)
    for requirement in ("hipaa-privacy-security", "research-systems-admin"):
        _complete(sqlite_db, "p-1012", requirement, now)
    ready = client.get(f"/projects/{project}/readiness", headers=hr).json()
    assert ready == {**ready, "ready": True, "blocking": []}
    yesterday = (now - timedelta(days=1)).date().isoformat()
    past = client.get(f"/projects/{project}/readiness", params={"as_of": yesterday}, headers=hr)
    assert past.json()["ready"] is False

    # The project manager sees it; another manager does not; the auditor reads it.
    assert (
        client.get(
            f"/projects/{project}/readiness", headers=_as(sqlite_db, Role.MANAGER, "p-1010")
        ).status_code
        == 200
    )
    assert (
        client.get(
            f"/projects/{project}/readiness", headers=_as(sqlite_db, Role.MANAGER, "p-1012")
        ).status_code
        == 404
    )
    assert (
        client.get(
            f"/projects/{project}/readiness", headers=_as(sqlite_db, Role.AUDITOR)
        ).status_code
        == 200
    )

    moved = (date.today() + timedelta(days=30)).isoformat()
    answer = client.post(f"/projects/{project}/go-live", json={"go_live": moved}, headers=hr)
    assert answer.status_code == 200 and answer.json()["go_live"] == moved
    assert any(name == "move_go_live" for _, name, _ in temporal.signals)


def test_an_inactive_track_enrols_nobody_new(
    client: TestClient, sqlite_db: Database, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "pack"
    shutil.copytree(MEDICAL, copy)
    tracks = copy / "tracks.yaml"
    text = tracks.read_text()
    tracks.write_text(
        text.replace(
            "    - id: site-investigator\n", "    - id: site-investigator\n      active: false\n", 1
        )
    )
    with sqlite_db.session() as session:
        deploy(
            session, load_pack(copy), author="hr", message="off", migration=Migration.GRANDFATHER
        )
    hr = _as(sqlite_db, Role.HR_ADMIN)
    refused = client.post("/tracks/site-investigator/enroll", json={"person": "p-1033"}, headers=hr)
    assert refused.status_code == 409 and "inactive" in refused.text


@pytest.mark.asyncio
async def test_auto_enrolment_follows_the_learning_paths(
    sqlite_db: Database, temporal: FakeTemporal
) -> None:
    from services import tracks
    from store.tokens import Principal

    with sqlite_db.session() as session:
        assert load_demo_people(session).errors == []
        deploy(
            session, load_pack(MEDICAL), author="hr", message="v1", migration=Migration.GRANDFATHER
        )
    cli = Principal(
        token_id=0, role=Role.HR_ADMIN, person_id=None, person_external_id=None, label="cli:t"
    )
    with sqlite_db.session() as session:
        done = await tracks.auto_enrol(
            session, temporal, task_queue="q", principal=cli, now=datetime.now(UTC)
        )  # type: ignore[arg-type]
        enrolled = {(r.enrolment.person.external_id, r.enrolment.track_id) for r in done}
    # Radiology technicians (the path's auto_enrol), nobody else.
    assert enrolled >= {("p-1030", PATH), ("p-1031", PATH), ("p-1034", PATH)}
    assert {track for _, track in enrolled} == {PATH}
    assert ("p-1033", PATH) not in enrolled  # a Radiology physician
    with sqlite_db.session() as session:
        again = await tracks.auto_enrol(
            session, temporal, task_queue="q", principal=cli, now=datetime.now(UTC)
        )  # type: ignore[arg-type]
    assert again == []


def test_cli_progress_and_usage(sqlite_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from duly.cli import app as cli

    monkeypatch.setenv("DULY_DATABASE_URL", sqlite_db.url)
    with sqlite_db.session() as session:
        assert load_demo_people(session).errors == []
        deploy(
            session, load_pack(MEDICAL), author="hr", message="v1", migration=Migration.GRANDFATHER
        )
    runner = CliRunner()
    empty = runner.invoke(cli, ["tracks", "progress", PATH])
    assert empty.exit_code == 0 and "nobody is enrolled" in empty.output
    unknown = runner.invoke(cli, ["tracks", "progress", "nope"])
    assert unknown.exit_code == 1
    assert runner.invoke(cli, ["tracks", "enroll"]).exit_code == 2
    # Reorder and (de)activate from the CLI: a new pack version each, refusals exit 1.
    order = ["research-systems-admin", "hipaa-privacy-security", "human-subjects-protection"]
    moved = runner.invoke(cli, ["tracks", "reorder", "site-administrator", *order])
    assert moved.exit_code == 0, moved.output
    assert "1. research-systems-admin, 2. hipaa-privacy-security" in moved.output
    assert "new pack version deployed" in moved.output
    bad = runner.invoke(cli, ["tracks", "reorder", "site-administrator", "hipaa-privacy-security"])
    assert bad.exit_code == 1 and "missing" in bad.output
    off = runner.invoke(cli, ["tracks", "deactivate", "site-administrator", "--reason", "closed"])
    assert off.exit_code == 0 and "(inactive)" in off.output
    on = runner.invoke(cli, ["tracks", "activate", "site-administrator", "--reason", "reopened"])
    assert on.exit_code == 0 and "(active)" in on.output


def test_summary_and_a_persons_tracks(client: TestClient, sqlite_db: Database) -> None:
    hr = _as(sqlite_db, Role.HR_ADMIN)
    for person in ("p-1030", "p-1031"):
        client.post(f"/tracks/{PATH}/enroll", json={"person": person}, headers=hr)
    now = datetime.now(UTC)
    for requirement in (
        "hipaa-privacy-security",
        "osha-bloodborne-pathogens",
        "human-subjects-protection",
        "ich-gcp",
    ):
        _complete(sqlite_db, "p-1030", requirement, now)
    summary = client.get(f"/tracks/{PATH}/summary", headers=hr).json()
    assert summary == {
        "track_id": PATH,
        "enrolled": 2,
        "completed": 1,
        "in_progress": 0,
        "not_started": 1,
        "failed": 0,
        "average_completion": 50.0,
    }
    manager = _as(sqlite_db, Role.MANAGER, "p-1012")
    theirs = client.get("/people/p-1030/tracks", headers=manager).json()
    assert theirs[0]["status"] == "completed" and theirs[0]["completed_at"] is not None
    other = _as(sqlite_db, Role.MANAGER, "p-1010")
    assert client.get("/people/p-1030/tracks", headers=other).status_code == 404


def test_a_completed_track_issues_a_certificate_anyone_can_verify(
    client: TestClient, sqlite_db: Database
) -> None:
    hr = _as(sqlite_db, Role.HR_ADMIN)
    client.post(f"/tracks/{PATH}/enroll", json={"person": "p-1030"}, headers=hr)
    now = datetime.now(UTC)
    required = ("hipaa-privacy-security", "osha-bloodborne-pathogens", "human-subjects-protection")
    for requirement in required:
        _complete(sqlite_db, "p-1030", requirement, now - timedelta(days=2))
    mine = _as(sqlite_db, Role.LEARNER, "p-1030")
    [partial] = client.get("/me/tracks", headers=mine).json()
    assert partial["status"] == "in_progress" and partial["certificate_code"] is None
    _complete(sqlite_db, "p-1030", "ich-gcp", now - timedelta(days=1))
    [done] = client.get("/me/tracks", headers=mine).json()
    code = done["certificate_code"]
    assert done["status"] == "completed" and code is not None
    # Issued the day the last required course was completed, not the day it was read.
    assert done["certificate_issued_on"] == (now - timedelta(days=1)).date().isoformat()
    public = client.get(f"/verify/{code.lower()}")  # no token; codes are case-insensitive
    assert public.status_code == 200
    assert public.json() == {
        "holder": "Aisha Dolorsit",
        "certification": "Radiology research technician path",
        "status": "completed",
        "valid_until": None,
    }
    with sqlite_db.session() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "track.complete")
        ).all()
    assert [e.target for e in entries] == [f"track/{PATH}/p-1030"]
    # Read again (and by others): the same certificate, issued once.
    again = client.get("/people/p-1030/tracks", headers=hr).json()
    assert again[0]["certificate_code"] == code
    assert client.get(f"/tracks/{PATH}/summary", headers=hr).json()["completed"] == 1
    with sqlite_db.session() as session:
        assert (
            len(
                session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "track.complete")
                ).all()
            )
            == 1
        )


def test_reordering_a_track_keeps_everyones_progress(
    client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    hr = _as(sqlite_db, Role.HR_ADMIN)
    track = "site-administrator"
    client.post(f"/tracks/{track}/enroll", json={"person": "p-1012"}, headers=hr)
    now = datetime.now(UTC)
    _complete(sqlite_db, "p-1012", "hipaa-privacy-security", now)
    [before] = client.get(f"/tracks/{track}/progress", headers=hr).json()
    assert before["next_course"] == "research-systems-admin" and before["percent"] == 50
    pack = client.get("/rules/active", headers=hr).json()["content_hash"]

    new_order = ["research-systems-admin", "human-subjects-protection", "hipaa-privacy-security"]
    # Only HR; a manager and a learner are refused.
    for role, person in ((Role.MANAGER, "p-1010"), (Role.LEARNER, "p-1020")):
        refused = client.post(
            f"/tracks/{track}/reorder",
            json={"courses": new_order},
            headers=_as(sqlite_db, role, person),
        )
        assert refused.status_code == 403
    answer = client.post(
        f"/tracks/{track}/reorder", json={"courses": new_order, "pack_hash": pack}, headers=hr
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["deployed"] is True and body["pack_hash"] != pack
    assert [c["requirement_id"] for c in body["courses"]] == new_order
    assert client.get("/rules/active", headers=hr).json()["content_hash"] == body["pack_hash"]
    # Mid-track: the completed course stays completed, the percentage is the same; only the
    # order shown changes (the next course was already the first not done).
    [after] = client.get(f"/tracks/{track}/progress", headers=hr).json()
    assert after["percent"] == 50 and after["status"] == "in_progress"
    assert [c["requirement_id"] for c in after["courses"]] == new_order
    statuses = {c["requirement_id"]: c["status"] for c in after["courses"]}
    assert statuses["hipaa-privacy-security"] == "completed"
    assert after["next_course"] == "research-systems-admin"
    # Nothing was assigned or signalled by the reorder.
    assert temporal.signals == []
    # The same order again: nothing deployed. A stale pack hash: 409.
    same = client.post(f"/tracks/{track}/reorder", json={"courses": new_order}, headers=hr)
    assert same.status_code == 200 and same.json()["deployed"] is False
    stale = client.post(
        f"/tracks/{track}/reorder", json={"courses": new_order, "pack_hash": pack}, headers=hr
    )
    assert stale.status_code == 409 and "changed" in stale.text
    # Not exactly the track's courses: 422 naming what is wrong.
    short = client.post(f"/tracks/{track}/reorder", json={"courses": new_order[:2]}, headers=hr)
    assert short.status_code == 422 and "missing hipaa-privacy-security" in short.text
    # A milestone before an earlier course's: 422 with the loader's explanation.
    broken = client.post(
        f"/tracks/{PATH}/reorder",
        json={
            "courses": [
                "ich-gcp",
                "hipaa-privacy-security",
                "osha-bloodborne-pathogens",
                "human-subjects-protection",
            ]
        },
        headers=hr,
    )
    assert broken.status_code == 422 and "milestones" in broken.text
    assert (
        client.post("/tracks/nope/reorder", json={"courses": ["x"]}, headers=hr).status_code == 404
    )
    with sqlite_db.session() as session:
        actions = [
            e.action
            for e in session.scalars(
                select(AuditEntry).where(AuditEntry.target == f"track/{track}")
            )
        ]
    assert actions == ["track.reorder"]


def test_a_deactivated_track_lets_people_mid_track_finish(
    client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    hr = _as(sqlite_db, Role.HR_ADMIN)
    track = "site-administrator"
    client.post(f"/tracks/{track}/enroll", json={"person": "p-1012"}, headers=hr)
    off = client.post(
        f"/tracks/{track}/deactivate", json={"reason": "site closed to new staff"}, headers=hr
    )
    assert off.status_code == 200, off.text
    assert off.json()["active"] is False and off.json()["deployed"] is True
    listed = {t["id"]: t["active"] for t in client.get("/tracks", headers=hr).json()}
    assert listed[track] is False
    # Nobody new: HR and managers are refused.
    refused = client.post(f"/tracks/{track}/enroll", json={"person": "p-1011"}, headers=hr)
    assert refused.status_code == 409 and "inactive" in refused.text
    # Enrolling someone already enrolled changes nothing and is not refused.
    again = client.post(f"/tracks/{track}/enroll", json={"person": "p-1012"}, headers=hr)
    assert again.status_code == 201 and again.json()["created"] is False
    # p-1012 mid-track finishes: the track completes and issues its certificate.
    now = datetime.now(UTC)
    for requirement in ("hipaa-privacy-security", "research-systems-admin"):
        _complete(sqlite_db, "p-1012", requirement, now)
    [done] = client.get("/people/p-1012/tracks", headers=hr).json()
    assert done["status"] == "completed" and done["certificate_code"] is not None
    # Deactivating twice deploys nothing; reactivating reopens enrolment.
    twice = client.post(f"/tracks/{track}/deactivate", json={"reason": "again"}, headers=hr)
    assert twice.json()["deployed"] is False
    on = client.post(f"/tracks/{track}/activate", json={"reason": "reopened"}, headers=hr)
    assert on.status_code == 200 and on.json()["active"] is True
    ok = client.post(f"/tracks/{track}/enroll", json={"person": "p-1011"}, headers=hr)
    assert ok.status_code == 201 and ok.json()["created"] is True
    with sqlite_db.session() as session:
        actions = [
            e.action
            for e in session.scalars(
                select(AuditEntry).where(AuditEntry.target == f"track/{track}")
            )
        ]
    assert actions == ["track.deactivate", "track.activate"]


def test_withdrawing_keeps_the_row_and_closes_only_what_the_track_alone_requires(
    client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    hr = _as(sqlite_db, Role.HR_ADMIN)
    # p-1030 is not in the track's audience for the playbook (directors and executives).
    assert client.post("/tracks/implementation-team/enroll", json={"person": "p-1030"}, headers=hr)
    inputs = [a for a in _started(temporal) if isinstance(a, AssignmentInput)]
    with sqlite_db.session() as session:
        person = session.scalar(select(Person).where(Person.external_id == "p-1030"))
        assert person is not None
        for inp in inputs:
            session.add(
                Obligation(
                    workflow_id=inp.workflow_id,
                    person_id=person.id,
                    kind="training",
                    requirement_id=inp.requirement_id,
                    requirement_title=inp.requirement_title,
                    due_date=inp.due_date,
                    status="assigned",
                    pack_hash=inp.pack_hash,
                    as_of=datetime.now(UTC),
                )
            )
        owed = {
            r.id
            for r in load_pack(MEDICAL).requirements
            if r.applies_to.applies(list(person.roles or []), person.department or "", "", "")
        }
    body = {"person": "p-1030", "reason": "moved to another project"}
    answer = client.post("/tracks/implementation-team/withdraw", json=body, headers=hr)
    assert answer.status_code == 200, answer.text
    closed = answer.json()["closed"]
    assert answer.json()["withdrawn"] is True and closed
    assert all(w.split("/")[2] not in owed for w in closed)
    assert {w for w, name, _ in temporal.signals if name == "cancel"} == set(closed)
    again = client.post("/tracks/implementation-team/withdraw", json=body, headers=hr)
    assert again.json() == {**again.json(), "withdrawn": False, "closed": []}
    progress = client.get("/people/p-1030/tracks", headers=hr).json()
    assert [p["status"] for p in progress if p["track_id"] == "implementation-team"] == [
        "withdrawn"
    ]
    missing = client.post(
        "/tracks/site-investigator/withdraw", json={**body, "person": "p-1030"}, headers=hr
    )
    assert missing.status_code == 404
    learner = _as(sqlite_db, Role.LEARNER, "p-1030")
    refused = client.post("/tracks/implementation-team/withdraw", json=body, headers=learner)
    assert refused.status_code == 403


def test_an_enrolment_that_completes_at_once_tells_the_learner_once(
    client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    """Every course done before the enrolment: the track completes, and its notice starts."""
    from temporalio.common import WorkflowIDReusePolicy

    from domain.contracts.tracks import TrackCompletedNotice

    now = datetime.now(UTC)
    for requirement in ("hipaa-privacy-security", "research-systems-admin"):
        _complete(sqlite_db, "p-1012", requirement, now - timedelta(hours=1))
    hr = _as(sqlite_db, Role.HR_ADMIN)
    answer = client.post("/tracks/site-administrator/enroll", json={"person": "p-1012"}, headers=hr)
    assert answer.status_code == 201, answer.text
    [(notice, options)] = [
        (arg, kw) for arg, kw in temporal.started if isinstance(arg, TrackCompletedNotice)
    ]
    [done] = client.get("/people/p-1012/tracks", headers=hr).json()
    code = done["certificate_code"]
    assert (notice.person, notice.track_id, notice.certificate_code) == (
        "p-1012",
        "site-administrator",
        code,
    )
    assert notice.verify_url.endswith(f"/verify/{code}")
    # One business key per completion, never reused: Temporal refuses a second start.
    assert options["id"] == "track/site-administrator/p-1012/completed"
    assert options["id_reuse_policy"] is WorkflowIDReusePolicy.REJECT_DUPLICATE
