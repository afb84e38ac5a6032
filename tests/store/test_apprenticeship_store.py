"""Apprenticeship tables on SQLite and PostgreSQL: migration round trip, idempotent entry ids."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from domain.statuses import STATUS_MAX_CHARS
from store.apprenticeships import Apprenticeship, ApprenticeshipEvaluation, ApprenticeshipHours
from store.db import Database
from store.migrate import downgrade, upgrade
from store.models import Person

TABLES = {"apprenticeships", "apprenticeship_hours", "apprenticeship_evaluations"}
WF = "apprenticeship/ap-1/elevator-mechanic"


def _entry(entry_id: str, hours: float = 8.0) -> ApprenticeshipHours:
    return ApprenticeshipHours(
        workflow_id=WF,
        entry_id=entry_id,
        day=date(2026, 1, 5),
        kind="work",
        hours=hours,
        status="pending",
        skills=["Rigging"],
        description="rigging a machine",
        source="api",
        logged_by="learner:ap-1",
    )


def test_tables_round_trip_through_the_migration(db: Database) -> None:
    assert set(sa.inspect(db.engine).get_table_names()) >= TABLES
    db.dispose()
    downgrade(db.url, "0008")
    assert not TABLES & set(sa.inspect(db.engine).get_table_names())
    db.dispose()
    upgrade(db.url)
    assert set(sa.inspect(db.engine).get_table_names()) >= TABLES


def _enrolment(person_id: int, compliance_status: str = "on_track") -> Apprenticeship:
    return Apprenticeship(
        workflow_id=WF,
        person_id=person_id,
        program_id="elevator-mechanic",
        program_name="Elevator Mechanic Apprenticeship",
        pack_hash="h" * 64,
        supervisor="jw-1",
        status="active",
        compliance_status=compliance_status,
        decided_by="apprenticeship:on_track",
        period=1,
        wage_percentage=50.0,
        enrolled_on=date(2026, 1, 1),
        expected_completion=date(2030, 1, 1),
        work_approved=0.0,
        classroom_approved=0.0,
        summary={"periods": []},
        as_of=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_a_pack_status_of_the_longest_allowed_name_is_stored(db: Database) -> None:
    """``compliance_status`` held 16 characters (PostgreSQL refused a longer pack status);
    0022 widens it to STATUS_MAX_CHARS, and its downgrade cuts what no longer fits."""
    longest = "behind_on_classroom_instruction_"
    assert len(longest) == STATUS_MAX_CHARS
    with db.session() as session:
        person = Person(external_id="ap-1", name="Apprentice One")
        session.add(person)
        session.flush()
        session.add(_enrolment(person.id, longest))
    with db.session() as session:
        assert session.scalar(sa.select(Apprenticeship.compliance_status)) == longest
    db.dispose()
    downgrade(db.url, "0021")
    db.dispose()
    with db.engine.connect() as connection:
        kept = connection.execute(sa.text("SELECT compliance_status FROM apprenticeships"))
        assert kept.scalar() == longest[:16]
    db.dispose()
    upgrade(db.url)
    [column] = [
        c
        for c in sa.inspect(db.engine).get_columns("apprenticeships")
        if c["name"] == "compliance_status"
    ]
    assert column["type"].length == STATUS_MAX_CHARS


def test_an_entry_id_is_recorded_once_per_apprenticeship(db: Database) -> None:
    with db.session() as session:
        person = Person(external_id="ap-1", name="Apprentice One")
        session.add(person)
        session.flush()
        session.add(_enrolment(person.id))
        session.add(_entry("e-1"))
        session.add(
            ApprenticeshipEvaluation(
                workflow_id=WF,
                evaluation_id="ev-1",
                day=date(2026, 3, 1),
                score=85,
                skills_signed_off=["Rigging"],
                notes="",
                final=False,
                evaluator="jw-1",
            )
        )
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(_entry("e-1", hours=4.0))
    with db.session() as session:
        rows = session.scalars(sa.select(ApprenticeshipHours)).all()
        assert [(r.entry_id, r.hours) for r in rows] == [("e-1", 8.0)]
